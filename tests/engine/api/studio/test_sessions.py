import asyncio

import pytest

from engine.api.studio.sessions import MiB, Session, UploadError, display_name, parse_category, safe_suffix


async def body(*chunks: bytes):
    for chunk in chunks:
        yield chunk


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def session(tmp_path) -> Session:
    folder = tmp_path / "session"
    folder.mkdir()
    return Session("s1", folder)


def test_an_upload_lands_in_the_session_folder_under_a_name_the_server_chose(session, pictures):
    data = (pictures / "person.png").read_bytes()
    upload = run(session.save_user("../../../etc/cron.d/x.png", body(data), len(data)))
    assert upload.path.parent == session.folder and upload.path.name.startswith("user-")
    assert upload.path.suffix == ".png" and upload.path.read_bytes() == data
    assert upload.name == "x.png"  # only ever shown in messages
    assert [p.name for p in session.folder.iterdir()] == [upload.path.name]


def test_a_new_photo_replaces_the_old_file(session, pictures):
    data = (pictures / "person.png").read_bytes()
    first = run(session.save_user("a.png", body(data), None))
    second = run(session.save_user("b.png", body(data), None))
    assert not first.path.exists() and second.path.exists() and session.user == second


def test_a_file_that_is_not_a_picture_is_refused_by_its_name_and_deleted(session, pictures):
    with pytest.raises(UploadError, match=r"^notes\.png: not an image") as refused:
        run(session.add_garment("notes.png", "top", body((pictures / "notes.png").read_bytes()), None))
    assert refused.value.status == 400
    assert list(session.folder.iterdir()) == [] and session.garments == {}


def test_a_motion_video_goes_through_the_cli_checks(session, pictures):
    with pytest.raises(UploadError, match=r"^clip\.mp4: "):
        run(session.save_motion("clip.mp4", body((pictures / "person.png").read_bytes()), None))
    assert session.motion is None and list(session.folder.iterdir()) == []


def test_too_large_is_refused_by_declared_length_and_while_reading(session):
    with pytest.raises(UploadError, match="larger than the 20 MiB limit") as declared:
        run(session.save_user("big.png", body(b"x"), 21 * MiB))
    assert declared.value.status == 413
    chunk = b"\0" * MiB
    with pytest.raises(UploadError, match="larger than"):
        run(session.save_user("big.png", body(*[chunk] * 21), None))  # no length declared
    assert list(session.folder.iterdir()) == []


def test_uploads_a_stream_reads_are_refused_while_it_runs(session, pictures):
    session.streaming = True
    with pytest.raises(UploadError, match="stop first") as refused:
        run(session.save_user("a.png", body((pictures / "person.png").read_bytes()), None))
    assert refused.value.status == 409
    garment = run(session.add_garment("red.png", "top", body((pictures / "red.png").read_bytes()), None))
    assert garment.id == "g1" and garment.line == f"{garment.upload.path}:top"  # the shelf still grows


def test_messages_show_the_clients_names_not_server_paths(session, pictures):
    garment = run(session.add_garment("my shirt.png", None, body((pictures / "red.png").read_bytes()), None))
    message = f"live: ignored {garment.upload.path}: something; see {session.folder}/other"
    assert session.public_message(message) == "live: ignored my shirt.png: something; see other"
    assert garment.line == str(garment.upload.path)  # no category: the model is told "unknown"


def test_names_suffixes_and_categories():
    assert display_name("C:\\Users\\ana\\photo.jpg", "photo") == "photo.jpg"
    assert display_name("", "photo") == "photo" and display_name("a\nb.png", "x") == "ab.png"
    assert safe_suffix("x.PNG") == ".png" and safe_suffix("x.png;rm -rf") == "" and safe_suffix("x") == ""
    assert parse_category("Dress") == "dress" and parse_category("unknown") is None and parse_category("") is None
    with pytest.raises(UploadError, match="unknown garment category 'hat'"):
        parse_category("hat")
