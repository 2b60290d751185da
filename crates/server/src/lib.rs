//! The idbridge daemon and admin CLI: configuration (figment), the command line (clap),
//! wiring of store and services, and the HTTP surface (axum).
//!
//! This crate wires; it does not decide. Domain rules live in `idbridge-core`, storage in
//! `idbridge-store`; handlers and commands convert between the outside world and those.

pub mod app;
pub mod apply_file;
pub mod cli;
pub mod commands;
pub mod config;
pub mod http;
pub mod listener;
pub mod serve;
pub mod strict;
pub mod telemetry;
pub mod views;
