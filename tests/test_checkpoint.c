/* sd/checkpoint: hparams of synthetic SDXL checkpoints and of the reference
 * harness's small model (tests/data/small, built with diffusers) read back
 * exactly; metadata overrides; clear errors for broken SDXL shapes; and the
 * kind named for every other model family found on Civitai. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>

#include "json_assert.h"
#include "sd/checkpoint.h"
#include "sdxl_synth.h"
#include "st_writer.h"
#include "testutil.h"

static char *dir;
static char err[1024];

static int setup(void **state) { dir = tu_mkdtemp("test_ckpt"); return dir ? 0 : -1; }
static int teardown(void **state) { tu_rm_rf(dir); free(dir); return 0; }

static const char *path_of(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

/* Writes w and reads it as an SDXL checkpoint: 0 with hp filled, or -1 with err. */
static int read_back(stw *w, sdxl_hparams *hp)
{
    assert_int_equal(stw_write(w, path_of("ckpt.safetensors")), 0);
    st_file *f = (st_file *)0x1;
    int rc = sdxl_checkpoint_open(path_of("ckpt.safetensors"), &f, hp, err, sizeof err);
    if (rc == 0) {
        assert_non_null(f);
        st_close(f);
    } else {
        assert_null(f);
    }
    return rc;
}

static stw *tiny_writer(sdxl_hparams *hp)
{
    synth_tiny_hparams(hp);
    stw *w = stw_new();
    synth_sdxl(w, hp);
    return w;
}

/* Broken variant of the tiny model must fail with every fragment. */
static void expect_broken(stw *w, const char *frag1, const char *frag2)
{
    sdxl_hparams got;
    if (read_back(w, &got) == 0) fail_msg("broken checkpoint accepted (expected \"%s\")", frag1);
    if (!strstr(err, frag1) || (frag2 && !strstr(err, frag2)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", err, frag1, frag2 ? frag2 : "");
    assert_non_null(strstr(err, "ckpt.safetensors: "));
    stw_free(w);
}

/* ---- SDXL read back ------------------------------------------------------- */

static void test_tiny_sdxl_hparams_read_back_exactly(void **state)
{
    sdxl_hparams want, got;
    stw *w = tiny_writer(&want);
    assert_int_equal(read_back(w, &got), 0);
    stw_free(w);
    assert_int_equal(got.unet.model_channels, 8);
    assert_int_equal(got.unet.depth_mid, 2);
    assert_int_equal(got.unet.depth_down[2], 2);
    assert_int_equal(got.unet.adm_embed_dim, 4);
    assert_int_equal(got.vae.z_channels, 4);
    assert_int_equal(got.te2.projection_dim, 16);
    assert_int_equal(got.te1.heads, 2);
    assert_memory_equal(&got, &want, sizeof got);
}

static void test_defaults_apply_without_metadata(void **state)
{
    sdxl_hparams want, got;
    synth_tiny_hparams(&want);
    /* widths that fit the SDXL defaults: head width 64, 32 groups */
    want.te1 = (sdxl_te_hparams){.width = 64, .layers = 1, .heads = 1, .head_width = 64, .vocab = 4,
                                 .positions = 3, .intermediate = 64, .act = SDXL_ACT_QUICK_GELU};
    want.te2 = (sdxl_te_hparams){.width = 128, .layers = 1, .heads = 2, .head_width = 64, .vocab = 4,
                                 .positions = 3, .intermediate = 128, .projection_dim = 64, .act = SDXL_ACT_GELU};
    want.unet.model_channels = 64;
    want.unet.channel_mult[1] = want.unet.channel_mult[2] = 1;
    want.unet.depth_down[1] = want.unet.depth_up[1] = 0; /* attention only on the last level */
    want.unet.depth_down[2] = want.unet.depth_up[2] = want.unet.depth_mid = 1;
    want.unet.head_width = 64;
    want.unet.norm_groups = 32;
    want.unet.ff_inner_mult = 1;
    want.unet.context_dim = 192;
    want.unet.adm_pooled_dim = 64;
    want.unet.adm_in_channels = 64 + 6 * 2;
    want.unet.adm_embed_dim = 2;
    want.vae.base_channels = 32;
    want.vae.channel_mult[1] = want.vae.channel_mult[2] = 1;
    want.vae.norm_groups = 32;
    want.vae.mid_attn_conv = 0; /* q/k/v stored as plain matrices */
    stw *w = stw_new();
    synth_sdxl(w, &want);
    assert_int_equal(read_back(w, &got), 0);
    stw_free(w);
    assert_memory_equal(&got, &want, sizeof got);
}

static void test_prediction_markers(void **state)
{
    sdxl_hparams hp, got;
    stw *w = tiny_writer(&hp);
    stw_add(w, "v_pred", "F32", 1, (int64_t[]){0}, NULL);
    stw_add(w, "ztsnr", "F32", 1, (int64_t[]){0}, NULL);
    assert_int_equal(read_back(w, &got), 0);
    assert_int_equal(got.prediction, SDXL_PRED_V);
    assert_int_equal(got.ztsnr, 1);
    stw_add(w, "edm_vpred.sigma_max", "F32", 0, (int64_t[]){0}, NULL);
    assert_int_equal(read_back(w, &got), 0);
    assert_int_equal(got.prediction, SDXL_PRED_EDM_V);
    stw_free(w);
}

/* tests/data/small, written by tools/reference/make_small_model.py through
 * diffusers, must read back as config.json describes it. */
static int json_at(const cJSON *o, const char *key, int i)
{
    const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, key), i);
    if (!cJSON_IsNumber(v)) fail_msg("config.json lacks %s[%d]", key, i);
    return v->valueint;
}

static void expect_te(const sdxl_te_hparams *te, const cJSON *j)
{
    assert_int_equal(te->width, json_int(j, "width"));
    assert_int_equal(te->layers, json_int(j, "layers"));
    assert_int_equal(te->heads, json_int(j, "heads"));
    assert_int_equal(te->head_width, json_int(j, "head_width"));
    assert_int_equal(te->vocab, json_int(j, "vocab"));
    assert_int_equal(te->positions, json_int(j, "positions"));
    assert_int_equal(te->intermediate, json_int(j, "intermediate"));
    const char *act = cJSON_GetObjectItemCaseSensitive(j, "act")->valuestring;
    assert_int_equal(te->act, strcmp(act, "gelu") == 0 ? SDXL_ACT_GELU : SDXL_ACT_QUICK_GELU);
}

static void test_small_reference_model_matches_config_json(void **state)
{
    cJSON *cfg = tu_read_json("tests/data/small/config.json");
    assert_non_null(cfg);
    st_file *f;
    sdxl_hparams hp;
    if (sdxl_checkpoint_open("tests/data/small/sdxl_small.safetensors", &f, &hp, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(st_file_size(f), json_int(cfg, "file_bytes"));
    st_close(f);

    const cJSON *u = cJSON_GetObjectItemCaseSensitive(cfg, "unet");
    assert_int_equal(hp.unet.in_channels, json_int(u, "in_channels"));
    assert_int_equal(hp.unet.out_channels, json_int(u, "out_channels"));
    assert_int_equal(hp.unet.model_channels, json_int(u, "model_channels"));
    assert_int_equal(hp.unet.num_levels, json_int(u, "num_levels"));
    assert_int_equal(hp.unet.num_res_blocks, json_int(u, "layers_per_block"));
    for (int l = 0; l < hp.unet.num_levels; l++) {
        assert_int_equal(hp.unet.channel_mult[l], json_at(u, "channel_mult", l));
        assert_int_equal(hp.unet.depth_down[l], json_at(u, "transformer_depth", l));
        assert_int_equal(hp.unet.depth_up[l], json_at(u, "transformer_depth", l));
        int ch = hp.unet.model_channels * hp.unet.channel_mult[l];
        assert_int_equal(ch, json_at(u, "block_out_channels", l));
        assert_int_equal(hp.unet.depth_down[l] ? ch / hp.unet.head_width : 0, json_at(u, "heads", l));
        assert_int_equal(hp.unet.depth_down[l] ? ch * hp.unet.ff_inner_mult : 0, json_at(u, "geglu_inner", l));
    }
    assert_int_equal(hp.unet.depth_mid, json_int(u, "transformer_depth_mid"));
    assert_int_equal(hp.unet.context_dim, json_int(u, "context_dim"));
    assert_int_equal(hp.unet.context_dim, json_int(cfg, "context_dim"));
    assert_int_equal(hp.unet.head_width, json_int(u, "head_width"));
    assert_int_equal(hp.unet.norm_groups, json_int(u, "norm_groups"));
    assert_int_equal(hp.unet.time_sinusoid_dim, json_int(u, "timestep_width"));
    assert_int_equal(hp.unet.time_embed_dim, json_int(u, "time_embed_dim"));
    assert_int_equal(hp.unet.adm_in_channels, json_int(u, "adm_in_channels"));
    assert_int_equal(hp.unet.adm_pooled_dim, json_int(u, "pooled_dim"));
    assert_int_equal(hp.unet.adm_embed_dim, json_int(u, "time_id_width"));
    assert_int_equal(SDXL_ADM_VALUES, json_int(u, "num_time_ids"));

    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "vae");
    assert_int_equal(hp.vae.num_levels, json_int(v, "num_levels"));
    for (int l = 0; l < hp.vae.num_levels; l++)
        assert_int_equal(hp.vae.base_channels * hp.vae.channel_mult[l], json_at(v, "block_out_channels", l));
    assert_int_equal(hp.vae.num_res_blocks, json_int(v, "layers_per_block"));
    assert_int_equal(hp.vae.num_res_blocks + 1, json_int(v, "decoder_resnets_per_level"));
    assert_int_equal(hp.vae.z_channels, json_int(v, "latent_channels"));
    assert_int_equal(hp.vae.norm_groups, json_int(v, "norm_groups"));
    assert_int_equal(hp.vae.in_channels, 3);
    assert_int_equal(hp.vae.out_channels, 3);

    const cJSON *t1 = cJSON_GetObjectItemCaseSensitive(cfg, "te1"), *t2 = cJSON_GetObjectItemCaseSensitive(cfg, "te2");
    expect_te(&hp.te1, t1);
    expect_te(&hp.te2, t2);
    assert_int_equal(hp.te2.projection_dim, json_int(t2, "projection_dim"));
    assert_int_equal(hp.prediction, SDXL_PRED_EPS);
    cJSON_Delete(cfg);
}

/* ---- broken SDXL files ------------------------------------------------------- */

static void test_wrong_shape_is_named_with_expected_shape(void **state)
{
    sdxl_hparams hp;
    stw *w = tiny_writer(&hp);
    const char *k = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight";
    assert_int_equal(stw_reshape(w, k, 2, (int64_t[]){16, 20}), 0);
    expect_broken(w, "\"model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight\" has shape "
                     "[16, 20], expected [16, 24]", "broken or non-standard");
}

static void test_missing_tensor_is_named(void **state)
{
    sdxl_hparams hp;
    stw *w = tiny_writer(&hp);
    assert_int_equal(stw_remove(w, "first_stage_model.decoder.up.1.upsample.conv.weight"), 0);
    expect_broken(w, "missing tensor \"first_stage_model.decoder.up.1.upsample.conv.weight\"", NULL);
    w = tiny_writer(&hp);
    assert_int_equal(stw_remove(w, "model.diffusion_model.output_blocks.5.2.conv.bias"), 0);
    expect_broken(w, "missing tensor \"model.diffusion_model.output_blocks.5.2.conv.bias\"", NULL);
    w = tiny_writer(&hp);
    assert_int_equal(stw_remove(w, "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_bias"), 0);
    expect_broken(w, "missing tensor \"conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_bias\"", NULL);
}

/* Text-encoder depth comes from the layer numbers: a layer whose tensors
 * are renamed or renumbered is an error naming it, never a shallower
 * encoder (issue 16; before, bigG's depth was the first number without an
 * in_proj_weight). */
static void test_text_encoder_layers_are_contiguous_and_complete(void **state)
{
    sdxl_hparams hp;
    stw *w = tiny_writer(&hp);
    assert_int_equal(stw_remove(w, "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight"), 0);
    assert_int_equal(stw_add(w, "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight_",
                             "F16", 2, (int64_t[]){48, 16}, NULL), 0);
    expect_broken(w, "OpenCLIP-bigG layer 1 of 2 is incomplete: missing tensor "
                  "\"conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight\"", NULL);
    w = tiny_writer(&hp);
    assert_int_equal(stw_remove(w, "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"), 0);
    expect_broken(w, "OpenCLIP-bigG layer 0 of 2 is incomplete", NULL);

    /* layer 0 of CLIP-L renumbered 2: layer 0 is missing */
    w = tiny_writer(&hp);
    assert_true(stw_remove_prefix(w, "conditioner.embedders.0.transformer.text_model.encoder.layers.0.") > 0);
    assert_int_equal(stw_add(w, "conditioner.embedders.0.transformer.text_model.encoder.layers.2.layer_norm1.weight",
                             "F16", 1, (int64_t[]){8}, NULL), 0);
    expect_broken(w, "CLIP-L layer 0 is missing", "layers up to 2 exist");

    /* a layer number that is not one */
    w = tiny_writer(&hp);
    assert_int_equal(stw_add(w, "conditioner.embedders.1.model.transformer.resblocks.07.ln_1.weight", "F16", 1,
                             (int64_t[]){16}, NULL), 0);
    expect_broken(w, "resblocks.07.ln_1.weight\" has no layer number", NULL);
    w = tiny_writer(&hp);
    assert_int_equal(stw_add(w, "conditioner.embedders.1.model.transformer.resblocks.99999999999.ln_1.weight", "F16",
                             1, (int64_t[]){16}, NULL), 0);
    expect_broken(w, "has no layer number below 256", NULL);
}

static void test_inconsistent_widths(void **state)
{
    sdxl_hparams hp;
    /* bigG projection narrower than label_emb's pooled part */
    stw *w = tiny_writer(&hp);
    stw_reshape(w, "conditioner.embedders.1.model.text_projection", 2, (int64_t[]){16, 10});
    expect_broken(w, "label_emb width 40 does not hold the pooled 10", NULL);
    /* context width that is not CLIP-L + bigG: every attn2.to_k/v says 30 */
    hp.unet.context_dim = 30;
    w = stw_new();
    synth_sdxl(w, &hp);
    expect_broken(w, "UNet context width 30 is not CLIP-L 8 + OpenCLIP-bigG 16", NULL);
    /* head width that does not divide the level width */
    synth_tiny_hparams(&hp);
    hp.unet.head_width = 3;
    w = stw_new();
    synth_sdxl(w, &hp);
    expect_broken(w, "not a multiple of the head width 3", NULL);
    /* UNet latent channels that the VAE does not produce */
    w = tiny_writer(&hp);
    stw_reshape(w, "model.diffusion_model.out.2.weight", 4, (int64_t[]){3, 8, 3, 3});
    stw_reshape(w, "model.diffusion_model.out.2.bias", 1, (int64_t[]){3});
    expect_broken(w, "UNet predicts 3 channels but the VAE latent has 4", NULL);
}

static void test_bad_metadata_values(void **state)
{
    sdxl_hparams hp;
    const char *bad[] = {"abc", "0", "-4", "4x", "", "99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        stw *w = stw_new();
        synth_tiny_hparams(&hp);
        stw_meta(w, "sdxl.vae.norm_groups", bad[i]);
        hp.vae.norm_groups = 32; /* keep synth from writing its own value */
        synth_sdxl(w, &hp);
        expect_broken(w, "__metadata__ \"sdxl.vae.norm_groups\"", "is not an integer between 1 and 65536");
    }
}

static void test_non_float_and_odd_structures(void **state)
{
    sdxl_hparams hp;
    stw *w = tiny_writer(&hp);
    stw_remove(w, "first_stage_model.quant_conv.bias");
    stw_add(w, "first_stage_model.quant_conv.bias", "I64", 1, (int64_t[]){8}, NULL);
    expect_broken(w, "\"first_stage_model.quant_conv.bias\" has dtype I64, expected a float weight", NULL);
    /* a transformer block fewer in one block of a level */
    w = tiny_writer(&hp);
    assert_true(stw_remove_prefix(w, "model.diffusion_model.input_blocks.8.1.transformer_blocks.1.") > 0);
    expect_broken(w, "UNet level 2 has different transformer depths", NULL);
    /* no mid-block attention (SSD-1B-style distillation) */
    w = tiny_writer(&hp);
    assert_true(stw_remove_prefix(w, "model.diffusion_model.middle_block.1.") > 0);
    expect_broken(w, "no mid-block transformer", "not supported");
    /* an extra input block that breaks the level structure */
    w = tiny_writer(&hp);
    stw_add(w, "model.diffusion_model.input_blocks.9.0.op.weight", "F16", 4, (int64_t[]){32, 32, 3, 3}, NULL);
    expect_broken(w, "UNet has 10 input blocks", NULL);
    /* a zero-width weight */
    w = tiny_writer(&hp);
    stw_reshape(w, "model.diffusion_model.time_embed.0.weight", 2, (int64_t[]){0, 8});
    expect_broken(w, "implausible shape [0, 8]", NULL);
}

/* ---- other kinds ----------------------------------------------------------------- */

/* A file with these tensor names (tiny F16 tensors; 2-D ones get `width`
 * as their second dim) must be identified as `kind`, with `frag` in the
 * description, and refused by sdxl_read_hparams with it. */
static void expect_kind(ckpt_kind kind, const char *frag, int64_t width, const char *const *names)
{
    stw *w = stw_new();
    for (; *names; names++) stw_add(w, *names, "F16", 2, (int64_t[]){2, width}, NULL);
    size_t n;
    uint8_t *b = stw_bytes(w, &n);
    stw_free(w);
    st_file *f;
    assert_int_equal(st_open_memory(b, n, "x.safetensors", &f, err, sizeof err), 0);
    char what[400];
    ckpt_kind got = ckpt_identify(f, what, sizeof what);
    if (got != kind || !strstr(what, frag)) fail_msg("kind %d \"%s\", expected %d with \"%s\"", got, what, kind, frag);
    sdxl_hparams hp;
    assert_int_equal(sdxl_read_hparams(f, &hp, err, sizeof err), -1);
    assert_non_null(strstr(err, "x.safetensors: this is "));
    assert_non_null(strstr(err, what));
    assert_non_null(strstr(err, "needs an SDXL base single-file checkpoint"));
    st_close(f);
    free(b);
}

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_other_model_families_are_named(void **state)
{
    expect_kind(CKPT_SD1, "SD 1.x checkpoint (cond_stage_model.transformer.*, text width 768)", 768,
                NAMES("model.diffusion_model.input_blocks.0.0.weight",
                      "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
                      "first_stage_model.encoder.conv_in.weight"));
    expect_kind(CKPT_SD2, "SD 2.x checkpoint (cond_stage_model.model.*, OpenCLIP-H text width 1024)", 1024,
                NAMES("model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.token_embedding.weight"));
    expect_kind(CKPT_SDXL_REFINER, "SDXL refiner", 2560,
                NAMES("model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.label_emb.0.0.weight",
                      "conditioner.embedders.0.model.token_embedding.weight", "first_stage_model.decoder.conv_in.weight"));
    expect_kind(CKPT_SDXL_REFINER, "adm width 2560", 2560,
                NAMES("model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.label_emb.0.0.weight",
                      "conditioner.embedders.0.model.token_embedding.weight"));
    expect_kind(CKPT_FLUX, "Flux", 4, NAMES("double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"));
    expect_kind(CKPT_FLUX, "Flux", 4, NAMES("model.diffusion_model.double_blocks.0.img_attn.qkv.weight"));
    expect_kind(CKPT_SD3, "SD3", 4, NAMES("model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight",
                                          "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight"));
    expect_kind(CKPT_DIFFUSERS, "diffusers-format UNet", 4, NAMES("down_blocks.0.resnets.0.conv1.weight", "conv_in.weight"));
    expect_kind(CKPT_DIFFUSERS, "diffusers-format VAE", 4,
                NAMES("encoder.down_blocks.0.resnets.0.conv1.weight", "decoder.up_blocks.0.resnets.0.conv1.weight"));
    expect_kind(CKPT_LORA, "LoRA adapter", 4,
                NAMES("lora_unet_down_blocks_1_attentions_0_proj_in.lora_down.weight",
                      "lora_unet_down_blocks_1_attentions_0_proj_in.lora_up.weight"));
    expect_kind(CKPT_LORA, "LoRA adapter (key \"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight\")", 4,
                NAMES("lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"));
    expect_kind(CKPT_LORA, "LoRA", 4, NAMES("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
                                            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"));
    expect_kind(CKPT_LORA, "LoRA", 4, NAMES("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight"));
    /* train_dreambooth_lora_sdxl.py's layout (diffusers' convert_state_dict_to_diffusers): once read as a UNet */
    expect_kind(CKPT_LORA, "LoRA adapter (key \"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.lora.down.weight\")", 4,
                NAMES("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.lora.down.weight",
                      "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.lora.up.weight"));
    expect_kind(CKPT_LORA, "LoRA", 4, NAMES("text_encoder.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight",
                                            "text_encoder.encoder.layers.0.self_attn.q_proj.lora_linear_layer.up.weight"));
    expect_kind(CKPT_LORA, "LyCORIS LoHa", 4, NAMES("lora_unet_input_blocks_4_1_proj_in.hada_w1_a",
                                                    "lora_unet_input_blocks_4_1_proj_in.hada_w1_b"));
    expect_kind(CKPT_LORA, "LyCORIS LoKr", 4, NAMES("lora_unet_input_blocks_4_1_proj_in.lokr_w1"));
    expect_kind(CKPT_VAE, "VAE alone", 4, NAMES("encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight",
                                                "quant_conv.weight"));
    expect_kind(CKPT_VAE, "VAE alone", 4, NAMES("first_stage_model.decoder.conv_in.weight"));
    expect_kind(CKPT_EMBEDDING, "textual-inversion embedding", 768, NAMES("clip_l", "clip_g"));
    expect_kind(CKPT_EMBEDDING, "textual-inversion embedding", 768, NAMES("string_to_param.*"));
    expect_kind(CKPT_UNET_BARE, "bare SDXL UNet", 4, NAMES("input_blocks.0.0.weight", "label_emb.0.0.weight"));
    expect_kind(CKPT_TEXT_ENCODER, "text encoder weights alone", 4, NAMES("text_model.encoder.layers.0.mlp.fc1.weight"));
    expect_kind(CKPT_UNKNOWN, "unrecognised tensor names (first: \"backbone.layer1.weight\")", 4,
                NAMES("backbone.layer1.weight", "head.fc.weight"));
    expect_kind(CKPT_UNKNOWN, "an SD 1.x/2.x UNet?", 4, NAMES("model.diffusion_model.input_blocks.0.0.weight"));
}

static void test_sdxl_with_missing_parts_names_them(void **state)
{
    sdxl_hparams hp;
    stw *w = tiny_writer(&hp);
    stw_remove_prefix(w, "conditioner.");
    stw_remove_prefix(w, "first_stage_model.");
    assert_int_equal(read_back(w, &hp), -1);
    assert_non_null(strstr(err, "this is an SDXL UNet without the CLIP-L text encoder "
                                "(conditioner.embedders.0.transformer.text_model.*), the OpenCLIP-bigG text "
                                "encoder (conditioner.embedders.1.model.*) and the VAE (first_stage_model.*)"));
    stw_free(w);
    w = tiny_writer(&hp);
    stw_remove_prefix(w, "first_stage_model.");
    assert_int_equal(read_back(w, &hp), -1);
    assert_non_null(strstr(err, "this is an SDXL UNet without the VAE (first_stage_model.*);"));
    stw_free(w);
}

static void test_empty_file_and_diffusers_folder(void **state)
{
    stw *w = stw_new();
    sdxl_hparams hp;
    assert_int_equal(read_back(w, &hp), -1);
    assert_non_null(strstr(err, "this is a file without tensors"));
    stw_free(w);

    char folder[4096], index[4200];
    snprintf(folder, sizeof folder, "%s/sdxl-diffusers", dir);
    assert_int_equal(mkdir(folder, 0755), 0);
    snprintf(index, sizeof index, "%s/model_index.json", folder);
    assert_int_equal(tu_write_file(index, "{}", 2), 0);
    st_file *f;
    assert_int_equal(sdxl_checkpoint_open(folder, &f, &hp, err, sizeof err), -1);
    assert_null(f);
    assert_non_null(strstr(err, "this is a diffusers folder (model_index.json)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_sdxl_hparams_read_back_exactly),
        cmocka_unit_test(test_defaults_apply_without_metadata),
        cmocka_unit_test(test_prediction_markers),
        cmocka_unit_test(test_small_reference_model_matches_config_json),
        cmocka_unit_test(test_wrong_shape_is_named_with_expected_shape),
        cmocka_unit_test(test_missing_tensor_is_named),
        cmocka_unit_test(test_text_encoder_layers_are_contiguous_and_complete),
        cmocka_unit_test(test_inconsistent_widths),
        cmocka_unit_test(test_bad_metadata_values),
        cmocka_unit_test(test_non_float_and_odd_structures),
        cmocka_unit_test(test_other_model_families_are_named),
        cmocka_unit_test(test_sdxl_with_missing_parts_names_them),
        cmocka_unit_test(test_empty_file_and_diffusers_folder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
