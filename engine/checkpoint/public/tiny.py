"""A tiny random-weight copy of the public route: the same classes, configs shrunk.

Everything is built offline, tokenizers included (a byte-level BPE without merges for
Qwen2.5-VL, the project's word-level T5 vocabulary for UMT5). Used by tests and smoke runs:
`tryon models init public-tiny DIR`.
"""

from __future__ import annotations

import torch

from engine.checkpoint.presets import TINY
from engine.checkpoint.store import build_tokenizer

# Qwen2.5-VL's chat and vision tokens, in the order of their ids after the byte alphabet.
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|image_pad|>", "<|video_pad|>")
TINY_FACE_SIZE = 16  # WanAnimate's motion encoder input (512 in the real model)


def _byte_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 symbols a byte-level BPE starts from."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def qwen_tokenizer():
    """A Qwen2 tokenizer over single bytes (no merges) plus Qwen2.5-VL's special tokens."""
    from transformers import Qwen2Tokenizer

    vocab = {symbol: index for index, symbol in enumerate(_byte_alphabet())}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=4096)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    return tokenizer


def build_edit(seed: int = 0):
    """QwenImageEditPlusPipeline with a 2-layer MMDiT, a small Qwen VAE and a 2-layer Qwen2.5-VL."""
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageEditPlusPipeline,
                           QwenImageTransformer2DModel)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from engine.pipelines.public.processor import EditProcessor

    tokenizer = qwen_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                 temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 32, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tokenizer),
                     "rope_scaling": {"mrope_section": [2, 2, 4], "rope_type": "default", "type": "default"},
                     "rope_theta": 1000000.0},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 32,
                       "fullatt_block_indexes": [1]},
        hidden_size=32, vocab_size=len(tokenizer),
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    processor = EditProcessor(image_processor=Qwen2VLImageProcessorPil(), tokenizer=tokenizer)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential",
                                                base_shift=0.5, max_shift=0.9, shift_terminal=0.02)
    return QwenImageEditPlusPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                     processor=processor, transformer=transformer)


def _umt5(seed: int):
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = build_tokenizer(TINY)
    torch.manual_seed(seed)
    return tokenizer, UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **TINY.text_encoder))


def _unipc():
    from diffusers import UniPCMultistepScheduler

    # What the Wan2.2 Diffusers repos ship: UniPC on flow-matching sigmas.
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)


def build_i2v(seed: int = 0):
    """WanImageToVideoPipeline as Wan2.2-TI2V-5B runs it (48-channel 16x VAE, expand_timesteps), tiny."""
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline, WanTransformer3DModel

    tokenizer, text_encoder = _umt5(seed)
    torch.manual_seed(seed)
    return WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=AutoencoderKLWan(**TINY.vae), scheduler=_unipc(),
        transformer=WanTransformer3DModel(**TINY.transformer), expand_timesteps=True,
    )


def build_animate(seed: int = 0):
    """WanAnimatePipeline (Wan2.1's 16-channel 8x VAE, a CLIP image encoder, the motion and face encoders), tiny."""
    from diffusers import AutoencoderKLWan, WanAnimatePipeline, WanAnimateTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    tokenizer, text_encoder = _umt5(seed)
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanAnimateTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, latent_channels=16,
        out_channels=16, text_dim=TINY.text_encoder["d_model"], freq_dim=32, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", image_dim=8, rope_max_seq_len=1024,
        motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16}, motion_encoder_size=TINY_FACE_SIZE,
        motion_style_dim=8, motion_dim=4, motion_encoder_dim=16, face_encoder_hidden_dim=16,
        face_encoder_num_heads=2, inject_face_latents_blocks=2,
    )
    image_encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=8, projection_dim=8, num_hidden_layers=2,
                                                     num_attention_heads=2, image_size=16, intermediate_size=16,
                                                     patch_size=4))
    image_processor = CLIPImageProcessor(crop_size=16, size=16)
    return WanAnimatePipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=_unipc(),
                              image_processor=image_processor, image_encoder=image_encoder, transformer=transformer)


def build_detector(seed: int = 0):
    """RT-DETR with a 4-stage toy ResNet, 80 COCO labels (person is 0), and its image processor."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig

    hidden = [8, 16, 24, 32]
    backbone = RTDetrResNetConfig(embeddings_size=8, hidden_sizes=hidden, depths=[1, 1, 1, 1],
                                  out_features=["stage2", "stage3", "stage4"], out_indices=[2, 3, 4])
    config = RTDetrConfig(
        backbone_config=backbone, encoder_hidden_dim=16, encoder_in_channels=hidden[1:], encoder_ffn_dim=32,
        encoder_attention_heads=2, d_model=16, num_queries=10, decoder_in_channels=[16, 16, 16], decoder_ffn_dim=32,
        decoder_layers=1, decoder_attention_heads=2, num_denoising=0, num_labels=80,
        id2label={0: "person", **{i: f"class_{i}" for i in range(1, 80)}},
    )
    torch.manual_seed(seed)
    return RTDetrForObjectDetection(config), RTDetrImageProcessor(size={"height": 64, "width": 64})


def build_keypoints(seed: int = 0):
    """ViTPose (simple decoder, 17 COCO keypoints) on a 2-layer ViT, and its image processor."""
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor

    backbone = VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, mlp_ratio=2, out_indices=[2])
    torch.manual_seed(seed)
    model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17))
    return model, VitPoseImageProcessor(size={"height": 64, "width": 48})


def save_stream_student(folder, seed: int = 0) -> None:
    """LongLive's layout at toy size, converted as the real one is: a random Wan transformer of the
    tiny preset's shape, saved as LongLive releases its generator (a pickle of `model.`-prefixed
    Wan2.2 original names under `generator`), then `tryon models convert --from longlive`."""
    import tempfile
    from pathlib import Path

    from diffusers import WanTransformer3DModel

    from engine.checkpoint.convert import convert_checkpoint, original_key, read_original
    from engine.checkpoint.store import CheckpointInfo, LoadedModel, build_random

    torch.manual_seed(seed)
    wan = WanTransformer3DModel(**TINY.transformer)
    with torch.no_grad():
        for param in wan.parameters():  # norms start at one: make every tensor tell apart
            param.add_(torch.randn_like(param) * 0.02)
    released = {"generator": {f"model.{original_key(k)}": v for k, v in wan.state_dict().items()}}
    base = LoadedModel(build_random(TINY, seed), CheckpointInfo(preset=TINY.name), TINY.name, Path(folder))
    with tempfile.TemporaryDirectory() as scratch:
        pickle = Path(scratch) / "model_bf16.pt"
        torch.save(released, pickle)
        convert_checkpoint(read_original(pickle, allow_pickle=True), Path(folder), base, "student",
                           source_name=pickle.name, layout="longlive")


def save_lightning_lora(folder, transformer, seed: int = 0, rank: int = 4) -> None:
    """A random LoRA on the edit transformer's attention, saved in diffusers' LoRA format at the
    Lightning file's name (what `load_lora_weights` reads)."""
    from pathlib import Path

    from diffusers import QwenImageEditPlusPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    from engine.checkpoint.public.presets import LIGHTNING_WEIGHTS

    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                        target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    transformer.add_adapter(config, adapter_name="lightning")
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:  # peft starts B at zero, which would make the LoRA a no-op
                param.normal_(std=0.05)
    layers = get_peft_model_state_dict(transformer, adapter_name="lightning")
    target = Path(folder) / LIGHTNING_WEIGHTS
    target.parent.mkdir(parents=True, exist_ok=True)
    QwenImageEditPlusPipeline.save_lora_weights(target.parent, transformer_lora_layers=layers,
                                                weight_name=target.name, safe_serialization=True)
    transformer.delete_adapters("lightning")
