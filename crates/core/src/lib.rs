//! Domain of idbridge, free of any protocol or database.
//!
//! This crate holds what an operator, a business customer and a portal mean by tenant,
//! role, access profile, catalog, scopes and individual; the lifecycle rules that turn an
//! individual's local activation and expiration into instants; the audit and change-event
//! records every write carries; the declarative configuration plan behind `idbridge apply`;
//! and the storage port ([`ports::Store`]) that the `idbridge-store` crate implements.
//!
//! It must never depend on axum, sqlx, ldap3 or any wire format: protocol crates convert
//! their wire types into these types at their edge.

pub mod audit;
pub mod catalog;
pub mod changeset;
pub mod clock;
pub mod config_plan;
pub mod connector;
pub mod directory;
pub mod error;
pub mod idp;
pub mod individual;
pub mod intent;
pub mod lifecycle;
pub mod local_account;
pub mod local_sign_in;
pub mod mapping;
pub mod permissions;
pub mod ports;
pub mod reconcile;
pub mod role;
pub mod schedule;
pub mod scopes;
pub mod secret;
pub mod source_record;
pub mod sso;
pub mod tenant;
pub mod token;

pub use error::{DomainError, DomainResult};
