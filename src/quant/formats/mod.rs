//! One file per tensor format: its block struct (size asserted against the type table), its
//! dequantizer and quantizer, its f64 reference dot product and its scalar dot kernels (the
//! canonical order for the quantized types). Which of them the engine uses, and where, is the
//! format's row in [`super::registry::FORMATS`].

pub mod fit;
pub mod float;
pub mod iq4_nl;
pub mod iq4_xs;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;
