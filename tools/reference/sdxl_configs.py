"""Hyper-parameters of the SDXL models the reference harness builds.

Owns: the diffusers/transformers configs of the FULL SDXL base model (values of
the hub's stabilityai/stable-diffusion-xl-base-1.0 configs, as given in
shared/specs/sdxl-numerics-diffusers.md §2.1, §2.5, §3.1, §1.1) and of the SMALL
SDXL-architecture test model, plus the `__metadata__` keys that tell the C
loader the few hyper-parameters that tensor shapes cannot reveal.

The small model keeps every structural SDXL invariant that is cheap to keep
(three UNet levels with channel ratio 1:2:4, the first without attention,
layers_per_block 2, transformer depth > 1 on the deeper levels, GEGLU, linear
proj_in/out, text_time added conditioning, a 4-level VAE with 3 downsamplings
and 4 latent channels, scaling factor 0.13025, CLIP-L with quick_gelu, bigG
with gelu and a square text projection, the real 49408-token vocabulary and 77
positions). It differs in widths and depths, which the C loader reads from
shapes, and in head widths and GroupNorm group counts, which it reads from the
metadata keys below.
"""

# --- SDXL base, full size -------------------------------------------------

FULL_UNET = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_layers_per_block=[1, 2, 10],
    attention_head_dim=[5, 10, 20],  # diffusers naming bug: these are head COUNTS (64-wide heads)
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    norm_num_groups=32,
    norm_eps=1e-5,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
    upcast_attention=False,
)

FULL_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    act_fn="silu",
    sample_size=1024,
    scaling_factor=0.13025,
    force_upcast=True,
)

# bos/eos/pad ids 0/2/1 are what the SDXL hub configs carry (legacy values);
# eos_token_id == 2 makes transformers pick the pooled row with
# argmax(input_ids), i.e. the first 49407 (modeling_clip.py, CLIPTextModel.forward).
_CLIP_COMMON = dict(
    vocab_size=49408,
    max_position_embeddings=77,
    layer_norm_eps=1e-5,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)

FULL_TE1 = dict(_CLIP_COMMON, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, projection_dim=768, hidden_act="quick_gelu")

FULL_TE2 = dict(_CLIP_COMMON, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                num_attention_heads=20, projection_dim=1280, hidden_act="gelu")

# EulerDiscreteScheduler as configured for SDXL base (spec §3.1).
SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    prediction_type="epsilon",
    interpolation_type="linear",
    timestep_spacing="leading",
    steps_offset=1,
    use_karras_sigmas=False,
    clip_sample=False,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    sample_max_value=1.0,
)

# --- small SDXL-architecture test model -----------------------------------

SMALL_TE1_WIDTH = 16      # CLIP-L stand-in (768 in SDXL)
SMALL_TE2_WIDTH = 32      # bigG stand-in (1280); must differ from TE1: diffusers tells the encoders apart by width
SMALL_UNET_CH = 12        # model channels (320)
SMALL_UNET_HEAD_WIDTH = 12
SMALL_UNET_GROUPS = 4
SMALL_TIME_ID_WIDTH = 16  # addition_time_embed_dim (256)
SMALL_VAE_GROUPS = 4

SMALL_UNET = dict(
    FULL_UNET,
    sample_size=16,
    block_out_channels=(SMALL_UNET_CH, 2 * SMALL_UNET_CH, 4 * SMALL_UNET_CH),
    # level 0 has no attention (value unused, as in SDXL); depths 3 and 2
    # differ on purpose so that a loader mixing up levels fails; the mid block
    # uses the last level's depth, like SDXL (10).
    transformer_layers_per_block=[1, 3, 2],
    attention_head_dim=[SMALL_UNET_CH // SMALL_UNET_HEAD_WIDTH,
                        2 * SMALL_UNET_CH // SMALL_UNET_HEAD_WIDTH,
                        4 * SMALL_UNET_CH // SMALL_UNET_HEAD_WIDTH],
    cross_attention_dim=SMALL_TE1_WIDTH + SMALL_TE2_WIDTH,
    addition_time_embed_dim=SMALL_TIME_ID_WIDTH,
    projection_class_embeddings_input_dim=SMALL_TE2_WIDTH + 6 * SMALL_TIME_ID_WIDTH,
    norm_num_groups=SMALL_UNET_GROUPS,
)

SMALL_VAE = dict(
    FULL_VAE,
    block_out_channels=(8, 16, 32, 32),
    norm_num_groups=SMALL_VAE_GROUPS,
    sample_size=128,
)

SMALL_TE1 = dict(FULL_TE1, hidden_size=SMALL_TE1_WIDTH, intermediate_size=4 * SMALL_TE1_WIDTH,
                 num_hidden_layers=3, num_attention_heads=2, projection_dim=SMALL_TE1_WIDTH)

SMALL_TE2 = dict(FULL_TE2, hidden_size=SMALL_TE2_WIDTH, intermediate_size=4 * SMALL_TE2_WIDTH,
                 num_hidden_layers=4, num_attention_heads=2, projection_dim=SMALL_TE2_WIDTH)

# Metadata keys the C loader reads (string values); the value in SDXL is the
# default, and a key is written only when the small model differs from it.
METADATA_DEFAULTS = {
    "sdxl.unet.head_width": 64,   # channels per attention head in the UNet transformers
    "sdxl.unet.norm_groups": 32,  # GroupNorm groups in the UNet (resnets, transformers, out)
    "sdxl.vae.norm_groups": 32,   # GroupNorm groups in the VAE
    "sdxl.te1.head_width": 64,    # CLIP-L channels per head
    "sdxl.te2.head_width": 64,    # bigG channels per head
}


def metadata_values(unet, vae, te1, te2):
    """The values of the METADATA_DEFAULTS keys for a set of configs."""
    return {
        "sdxl.unet.head_width": unet["block_out_channels"][1] // unet["attention_head_dim"][1],
        "sdxl.unet.norm_groups": unet["norm_num_groups"],
        "sdxl.vae.norm_groups": vae["norm_num_groups"],
        "sdxl.te1.head_width": te1["hidden_size"] // te1["num_attention_heads"],
        "sdxl.te2.head_width": te2["hidden_size"] // te2["num_attention_heads"],
    }


def checkpoint_metadata(unet, vae, te1, te2):
    """`__metadata__` for a checkpoint: only the keys whose value is not SDXL's."""
    values = metadata_values(unet, vae, te1, te2)
    return {k: str(v) for k, v in values.items() if v != METADATA_DEFAULTS[k]}

# --- demo model (train_demo_model.py) -----------------------------------------
# Sized so that a 1024x1024 24-step job stays about half a minute on a 2-core
# CPU (attention only at the two smaller levels, one transformer each) and
# the file stays under 20 MB; the text encoders are the small model's.

DEMO_UNET_HEAD_WIDTH = 32
DEMO_UNET = dict(
    SMALL_UNET,
    sample_size=32,
    block_out_channels=(32, 64, 96),
    transformer_layers_per_block=[1, 1, 1],
    attention_head_dim=[1, 64 // DEMO_UNET_HEAD_WIDTH, 96 // DEMO_UNET_HEAD_WIDTH],
    norm_num_groups=8,
)

DEMO_VAE = dict(SMALL_VAE, block_out_channels=(16, 32, 64, 64), sample_size=256)

DEMO_TE1 = SMALL_TE1
DEMO_TE2 = SMALL_TE2
