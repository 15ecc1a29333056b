//! Shared by unit and integration tests: a network small enough to train on two CPU cores.

use fadlora_model::Wav2Vec2Config;

/// XLS-R layout (pre-LN, LayerNorm convolutions) at toy size: width 32, 2 layers, 2 heads,
/// FFN 64, seven 16-channel convolutions, positional conv kernel 16 in 4 groups, no dropout.
pub fn micro_wav2vec2() -> Wav2Vec2Config {
    Wav2Vec2Config {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 64,
        conv_dim: vec![16; 7],
        num_conv_pos_embeddings: 16,
        num_conv_pos_embedding_groups: 4,
        hidden_dropout: 0.0,
        attention_dropout: 0.0,
        activation_dropout: 0.0,
        feat_proj_dropout: 0.0,
        layerdrop: 0.0,
        ..Wav2Vec2Config::xls_r_300m()
    }
}
