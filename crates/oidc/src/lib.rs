//! Single sign-on for the self-care portals.
//!
//! - [`upstream`]: a tenant's people log in at their own IdP (Entra ID, Okta, any OpenID
//!   provider): authorization code with PKCE, state and nonce; strict ID token
//!   verification with the `openidconnect` crate; the groups claim's four states.
//! - [`provider`]: idbridge is the portals' OpenID provider: discovery, JWKS, authorize
//!   (with the home-realm discovery page at `/login`), token (code + PKCE, refresh with
//!   rotation and reuse detection), userinfo, RP-initiated logout.
//! - [`keys`]: signing keys generated, stored and rotated with overlap by idbridge.
//! - [`backchannel`]: OpenID Connect Back-Channel Logout tokens to portals.
//!
//! Who a verified login is (linking, just-in-time provisioning) is decided by the
//! daemon through [`provider::Accounts`]; this crate never writes individuals.

pub mod backchannel;
pub mod batch;
pub mod cache;
pub mod jose;
pub mod keys;
pub mod pages;
pub mod provider;
pub mod upstream;

pub use provider::{Accounts, ProviderSettings, Refusal, SsoState, router};
