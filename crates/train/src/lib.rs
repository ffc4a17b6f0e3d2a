//! DP-SGD LoRA fine-tuning of llama-family decoders on candle.

pub mod data;
pub mod error;
pub mod lora;
pub mod model;
pub mod tokenizer;

pub use error::{Result, TrainError};
pub mod fixtures;
