//! DP-SGD LoRA fine-tuning of llama-family decoders on candle.
//!
//! Start with [`trainer::run`]: it loads a model ([`model::load`]) and a
//! dataset ([`data::Dataset`]), calibrates the noise with the accountant,
//! and runs DP-SGD steps ([`step::gradient`]) whose per-example gradients
//! come from the decoder's hand-written backward pass
//! ([`model::Llama::backward`]), recording each step in the ledger before
//! applying it.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dpsgd;
pub mod error;
pub mod eval;
pub mod fetch;
pub mod fixtures;
pub mod generate;
pub mod kernels;
pub mod lora;
pub mod model;
pub mod optim;
pub mod protection;
pub mod report;
pub mod step;
pub mod tokenizer;
pub mod trainer;

pub use error::{Result, TrainError};
