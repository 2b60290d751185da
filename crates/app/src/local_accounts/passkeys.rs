//! Passkeys (WebAuthn) as the second factor of a local sign-in, beside TOTP: registration
//! and assertion ceremonies by `webauthn-rs`, which checks the challenge, the origin, the
//! RP id, user verification and the signature counter. Ceremony states go to the caller
//! (the sign-in's pending record, server-side) as JSON and come back once.

use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url,
    Webauthn, WebauthnBuilder,
};

/// The relying party: idbridge's public URL is the origin and its host the RP id, so a
/// passkey works on exactly the pages it was registered on.
#[derive(Clone)]
pub struct Relying {
    webauthn: std::sync::Arc<Webauthn>,
}

impl std::fmt::Debug for Relying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Relying")
    }
}

/// A ceremony begun: the options for `navigator.credentials.create|get` (JSON, in the
/// page) and the state the answer is checked against (kept server-side).
#[derive(Debug, Clone)]
pub struct Ceremony {
    pub options: String,
    pub state: String,
}

impl Relying {
    /// `None` when the public URL cannot be a WebAuthn origin: browsers accept only a
    /// domain (not an IP address) over HTTPS, or `localhost`; the pages then offer TOTP only.
    pub fn for_public_url(public_url: &str, operator_name: &str) -> Result<Option<Self>, String> {
        let origin = Url::parse(public_url).map_err(|e| format!("public URL {public_url:?}: {e}"))?;
        let Some(domain) = origin.domain().map(str::to_owned) else { return Ok(None) };
        if origin.scheme() != "https" && domain != "localhost" {
            return Ok(None);
        }
        let webauthn = WebauthnBuilder::new(&domain, &origin)
            .and_then(|b| b.rp_name(operator_name).build())
            .map_err(|e| format!("passkeys for {public_url}: {e}"))?;
        Ok(Some(Self { webauthn: std::sync::Arc::new(webauthn) }))
    }

    /// Registration for `user` (the individual's id, login and name); passkeys it already
    /// has are excluded, so one authenticator is registered once.
    pub fn begin_registration(
        &self,
        user: uuid::Uuid,
        login: &str,
        display: &str,
        existing: &[Passkey],
    ) -> Result<Ceremony, String> {
        let exclude = existing.iter().map(|p| p.cred_id().clone()).collect::<Vec<_>>();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user, login, display, Some(exclude).filter(|e| !e.is_empty()))
            .map_err(|e| e.to_string())?;
        Ok(Ceremony { options: to_json(&options)?, state: to_json(&state)? })
    }

    /// The browser's answer to a registration: the new passkey, or why not.
    pub fn finish_registration(&self, state: &str, answer: &str) -> Result<Passkey, String> {
        let state: PasskeyRegistration = serde_json::from_str(state).map_err(|e| format!("ceremony state: {e}"))?;
        let answer: RegisterPublicKeyCredential =
            serde_json::from_str(answer).map_err(|e| format!("the browser's answer: {e}"))?;
        self.webauthn.finish_passkey_registration(&answer, &state).map_err(|e| e.to_string())
    }

    pub fn begin_assertion(&self, passkeys: &[Passkey]) -> Result<Ceremony, String> {
        let (options, state) = self.webauthn.start_passkey_authentication(passkeys).map_err(|e| e.to_string())?;
        Ok(Ceremony { options: to_json(&options)?, state: to_json(&state)? })
    }

    /// The browser's answer to an assertion: the credential id it came from and the
    /// result to update that passkey with (its counter and backup state).
    pub fn finish_assertion(
        &self,
        state: &str,
        answer: &str,
    ) -> Result<webauthn_rs::prelude::AuthenticationResult, String> {
        let state: PasskeyAuthentication = serde_json::from_str(state).map_err(|e| format!("ceremony state: {e}"))?;
        let answer: PublicKeyCredential =
            serde_json::from_str(answer).map_err(|e| format!("the browser's answer: {e}"))?;
        self.webauthn.finish_passkey_authentication(&answer, &state).map_err(|e| e.to_string())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| e.to_string())
}

/// A stored record's passkey (`None` if a newer version wrote something else).
pub fn passkey_of(record: &idbridge_core::local_account::PasskeyRecord) -> Option<Passkey> {
    serde_json::from_value(record.key.clone()).ok()
}

/// The base64url credential id `webauthn-rs` prints, as records keep it.
pub fn credential_id(passkey: &Passkey) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(passkey.cred_id().as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_domain_over_https_or_localhost_can_be_a_relying_party() {
        assert!(Relying::for_public_url("https://id.abc.example", "ABC").unwrap().is_some());
        assert!(Relying::for_public_url("http://localhost:8080", "ABC").unwrap().is_some());
        assert!(Relying::for_public_url("http://127.0.0.1:8080", "ABC").unwrap().is_none());
        assert!(Relying::for_public_url("https://10.0.0.1", "ABC").unwrap().is_none());
        assert!(Relying::for_public_url("http://id.abc.example", "ABC").unwrap().is_none());
        assert!(Relying::for_public_url("not a url", "ABC").is_err());
    }

    #[test]
    fn a_registration_names_the_relying_party_and_the_person() {
        let rp = Relying::for_public_url("https://id.abc.example", "ABC Telecom").unwrap().unwrap();
        let ceremony = rp.begin_registration(uuid::Uuid::nil(), "bob@smallco.example", "Bob", &[]).unwrap();
        let options: serde_json::Value = serde_json::from_str(&ceremony.options).unwrap();
        assert_eq!(options["publicKey"]["rp"]["id"], "id.abc.example");
        assert_eq!(options["publicKey"]["rp"]["name"], "ABC Telecom");
        assert_eq!(options["publicKey"]["user"]["name"], "bob@smallco.example");
        // A forged or garbled answer is refused, not a panic.
        for answer in ["", "{}", r#"{"id":"x","rawId":"x","type":"public-key","response":{}}"#] {
            assert!(rp.finish_registration(&ceremony.state, answer).is_err());
        }
        assert!(rp.finish_registration("{}", "{}").is_err());
    }
}
