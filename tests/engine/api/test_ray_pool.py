import sys

import pytest

from engine.errors import InputError
from engine.api.ray_pool import file_system_of, import_ray, require_shared_storage


def test_the_deepest_mount_holding_a_path_names_its_file_system(tmp_path):
    tmp_path = tmp_path.resolve()  # as the mount table would name it
    assert file_system_of(tmp_path / "not" / "made" / "yet", f"overlay / overlay rw 0 0\nx {tmp_path} nfs rw 0 0") == "nfs"
    shared = tmp_path / "shared"
    shared.mkdir()
    table = f"overlay / overlay rw 0 0\nsrv:/x {tmp_path} ext4 rw 0 0\nsrv:/y {shared} nfs4 rw 0 0\n"
    assert file_system_of(shared / "renders", table) == "nfs4"
    assert file_system_of(tmp_path / "sharedish", table) == "ext4"  # a sibling whose name starts the same
    spaced = tmp_path / "with space"
    spaced.mkdir()
    assert file_system_of(spaced, f"srv:/z {str(spaced).replace(' ', chr(92) + '040')} ceph rw 0 0") == "ceph"
    assert file_system_of(tmp_path, "") is None


def test_a_local_out_is_refused_only_on_a_cluster_of_several_nodes(tmp_path):
    mounts = tmp_path / "mounts"
    out = tmp_path / "out"
    mounts.write_text(f"overlay / overlay rw 0 0\n/dev/sda {tmp_path} ext4 rw 0 0\n")
    require_shared_storage(out, nodes=1, mounts=mounts)  # one node: its own disk is fine
    with pytest.raises(InputError) as refused:
        require_shared_storage(out, nodes=3, mounts=mounts)
    message = str(refused.value)
    assert message.startswith(f"{out}: ") and "3 nodes" in message and "local ext4" in message
    assert "\n" not in message
    mounts.write_text(f"overlay / overlay rw 0 0\nnas:/renders {tmp_path} nfs4 rw 0 0\n")
    require_shared_storage(out, nodes=3, mounts=mounts)
    require_shared_storage(out, nodes=3, mounts=tmp_path / "no-mount-table")  # cannot tell: not refused


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when it is not installed
    with pytest.raises(InputError, match=r"pip install 'tryon\[ray\]'"):
        import_ray()
