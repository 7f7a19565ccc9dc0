//! Request signing written by us (AWS is signed by its SDK).

pub mod tc3;
