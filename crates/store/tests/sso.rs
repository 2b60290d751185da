//! The SSO store contract on SQLite and PostgreSQL: single-use logins and codes, code
//! replay revoking its grant, refresh reuse revoking the family, ending an individual's
//! sessions, key rotation records, portal clients.

#[allow(unused_macros)]
mod common;

use std::sync::Arc;

use common::{Fixture, ctx, tenant};
use idbridge_core::individual::IndividualId;
use idbridge_core::ports::{SsoStore, Store};
use idbridge_core::sso::{
    AuthorizationCode, CodeRedemption, OAuthToken, PortalClient, RefreshUse, SigningKeyRecord, SsoSession, TokenKind,
};
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

async fn sso_contract(store: Arc<idbridge_store::SqlStore>) {
    let dyn_store: Arc<dyn Store> = store.clone();
    let acme = tenant(&dyn_store, "acme").await;
    let beta = tenant(&dyn_store, "beta").await;
    // Stored instants have microsecond precision.
    let now = Timestamp::from_microsecond(idbridge_core::clock::now().as_microsecond()).unwrap();
    let s: &dyn SsoStore = store.as_ref();

    // Pending records are taken once, and not after they expire.
    s.put_pending("h1", "data", now + SignedDuration::from_secs(60)).await.unwrap();
    assert_eq!(s.take_pending("h1", now).await.unwrap().as_deref(), Some("data"));
    assert_eq!(s.take_pending("h1", now).await.unwrap(), None);
    s.put_pending("h2", "old", now - SignedDuration::from_secs(1)).await.unwrap();
    assert_eq!(s.take_pending("h2", now).await.unwrap(), None);

    // Portal clients.
    let client = PortalClient {
        id: "portal".into(),
        name: "Portal".into(),
        secret_hash: "abc".into(),
        redirect_uris: vec!["https://portal.example/cb".into()],
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: Some("https://portal.example/bc".into()),
        id_token_alg: "RS256".into(),
        tenants: vec![],
        compact_claims: false,
        created_at: now,
        updated_at: now,
    };
    s.put_portal_client(
        &client,
        &ctx("ops").record(None, "portal_client", "portal", "portal_client.created", None, None),
    )
    .await
    .unwrap();
    assert_eq!(s.get_portal_client("portal").await.unwrap().unwrap(), client);
    assert_eq!(s.list_portal_clients().await.unwrap().len(), 1);

    // Sessions, codes, tokens.
    let alice = IndividualId(Uuid::new_v4());
    let session = SsoSession {
        id: Uuid::new_v4(),
        tenant_id: acme.id,
        individual_id: alice,
        connection: "idp".into(),
        auth_time: now,
        expires_at: now + SignedDuration::from_hours(1),
        ended_at: None,
    };
    s.create_session(&session, "cookie-hash").await.unwrap();
    assert_eq!(s.find_session("cookie-hash", now).await.unwrap().unwrap().id, session.id);
    let code = AuthorizationCode {
        client_id: "portal".into(),
        redirect_uri: "https://portal.example/cb".into(),
        code_challenge: "c".into(),
        nonce: Some("n".into()),
        scope: "openid".into(),
        session_id: session.id,
        tenant_id: acme.id,
        individual_id: alice,
        auth_time: now,
        expires_at: now + SignedDuration::from_secs(60),
    };
    s.put_code("code-hash", &code).await.unwrap();
    let grant = Uuid::new_v4();
    assert_eq!(s.redeem_code("code-hash", grant, now).await.unwrap(), CodeRedemption::Fresh(code.clone()));
    let token = |hash: &str, kind: TokenKind, grant_id: Uuid| OAuthToken {
        hash: hash.into(),
        kind,
        grant_id,
        client_id: "portal".into(),
        tenant_id: acme.id,
        individual_id: alice,
        session_id: session.id,
        scope: "openid".into(),
        created_at: now,
        expires_at: now + SignedDuration::from_hours(1),
        used_at: None,
        revoked_at: None,
    };
    s.put_tokens(&[token("at1", TokenKind::Access, grant), token("rt1", TokenKind::Refresh, grant)]).await.unwrap();
    assert!(s.find_access_token("at1", now).await.unwrap().is_some());
    assert!(s.find_access_token("rt1", now).await.unwrap().is_none(), "a refresh token is not an access token");
    // A replayed code revokes the grant's tokens.
    assert_eq!(s.redeem_code("code-hash", Uuid::new_v4(), now).await.unwrap(), CodeRedemption::Replayed);
    assert!(s.find_access_token("at1", now).await.unwrap().is_none());
    assert_eq!(s.redeem_code("nope", Uuid::new_v4(), now).await.unwrap(), CodeRedemption::Unknown);

    // Refresh rotation: once fine, twice revokes the family (including the successor).
    let family = Uuid::new_v4();
    s.put_tokens(&[token("rt2", TokenKind::Refresh, family)]).await.unwrap();
    assert!(matches!(s.use_refresh_token("rt2", now).await.unwrap(), RefreshUse::Fresh(t) if t.grant_id == family));
    s.put_tokens(&[token("rt3", TokenKind::Refresh, family), token("at3", TokenKind::Access, family)]).await.unwrap();
    assert_eq!(s.use_refresh_token("rt2", now).await.unwrap(), RefreshUse::Reused);
    assert_eq!(s.use_refresh_token("rt3", now).await.unwrap(), RefreshUse::Revoked, "the successor was revoked too");
    assert!(s.find_access_token("at3", now).await.unwrap().is_none());
    assert_eq!(s.use_refresh_token("unknown", now).await.unwrap(), RefreshUse::Unknown);

    // Ending an individual's sessions names the portals holding tokens, and is scoped by tenant.
    let other = SsoSession { id: Uuid::new_v4(), tenant_id: beta.id, individual_id: cookie_free(), ..session.clone() };
    s.create_session(&other, "beta-cookie").await.unwrap();
    s.put_tokens(&[token("at4", TokenKind::Access, Uuid::new_v4())]).await.unwrap();
    // A session alice opened after the change (the sign-in that caused it) stays.
    let later = SsoSession { id: Uuid::new_v4(), auth_time: now + SignedDuration::from_secs(5), ..session.clone() };
    s.create_session(&later, "later-cookie").await.unwrap();
    let changed_at = now + SignedDuration::from_secs(1);
    let ended = s.end_individual_sessions(acme.id, alice, changed_at, now).await.unwrap();
    assert_eq!(ended.len(), 1);
    assert!(s.find_session("later-cookie", now).await.unwrap().is_some(), "opened after the change");
    assert_eq!(ended[0].session_id, session.id);
    assert_eq!(ended[0].client_ids, vec!["portal".to_owned()]);
    assert!(s.find_session("cookie-hash", now).await.unwrap().is_none());
    assert!(s.find_access_token("at4", now).await.unwrap().is_none());
    assert!(s.find_session("beta-cookie", now).await.unwrap().is_some(), "another tenant's session stays");

    // Ending it recorded the logout owed to its portal, in the same transaction.
    let lease = SignedDuration::from_secs(60);
    let owed = s.claim_backchannel_logouts(now, lease, 10).await.unwrap();
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert_eq!((owed[0].session_id, owed[0].client_id.as_str(), owed[0].attempts), (session.id, "portal", 1));
    assert_eq!(owed[0].individual_id, alice);
    assert!(s.claim_backchannel_logouts(now, lease, 10).await.unwrap().is_empty(), "claimed once");
    let retry_at = now + SignedDuration::from_secs(1);
    s.backchannel_logout_failed(owed[0].id, Some(retry_at), "portal answered 503", now).await.unwrap();
    let stats = s.backchannel_logout_stats(now).await.unwrap();
    assert_eq!((stats.queued, stats.failing, stats.dead), (1, 1, 0));
    let again = s.claim_backchannel_logouts(retry_at, lease, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 2));
    assert_eq!(again[0].last_error.as_deref(), Some("portal answered 503"));
    s.backchannel_logout_failed(again[0].id, None, "given up", retry_at).await.unwrap();
    assert!(s.claim_backchannel_logouts(retry_at + lease + lease, lease, 10).await.unwrap().is_empty(), "dead");
    let dead = s.list_dead_backchannel_logouts(10).await.unwrap();
    assert_eq!((dead.len(), dead[0].dead_at), (1, Some(retry_at)));
    assert_eq!(s.backchannel_logout_stats(now).await.unwrap().dead, 1);
    // A session ended twice owes its portals once.
    s.create_session(&SsoSession { id: Uuid::new_v4(), ..session.clone() }, "twice-cookie").await.unwrap();
    let twice = s.find_session("twice-cookie", now).await.unwrap().unwrap();
    s.put_tokens(&[OAuthToken { session_id: twice.id, ..token("at9", TokenKind::Access, Uuid::new_v4()) }])
        .await
        .unwrap();
    s.end_session(twice.id, now).await.unwrap();
    s.end_session(twice.id, now).await.unwrap();
    let owed = s.claim_backchannel_logouts(now, lease, 10).await.unwrap();
    assert_eq!(owed.len(), 1, "{owed:?}");
    s.backchannel_logout_done(owed[0].id).await.unwrap();
    assert_eq!(s.backchannel_logout_stats(now).await.unwrap().queued, 0);

    // Signing keys: a successor retires its predecessor at its activation.
    let key = |kid: &str, at: Timestamp| SigningKeyRecord {
        kid: kid.into(),
        alg: "ES256".into(),
        private_pkcs8: "AAAA".into(),
        public_jwk: serde_json::json!({ "kid": kid }),
        created_at: at,
        activates_at: at,
        retires_at: None,
        removed_at: None,
    };
    let audit = ctx("ops").record(None, "signing_key", "k", "signing_key.created", None, None);
    s.add_signing_key(&key("k1", now), &[], &audit).await.unwrap();
    let later = now + SignedDuration::from_hours(24);
    s.add_signing_key(&key("k2", later), &[("k1".into(), later, later + SignedDuration::from_hours(24))], &audit)
        .await
        .unwrap();
    let keys = s.list_signing_keys().await.unwrap();
    assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["k2", "k1"]);
    assert_eq!(keys[1].retires_at, Some(later));
    assert!(s.delete_portal_client("portal", &audit).await.unwrap());
    assert!(s.get_portal_client("portal").await.unwrap().is_none());
}

fn cookie_free() -> IndividualId {
    IndividualId(Uuid::new_v4())
}

#[tokio::test]
async fn sso_store_on_sqlite() {
    let fixture = Fixture::sqlite().await;
    sso_contract(fixture.store.clone()).await;
    fixture.finish().await;
}

#[tokio::test]
async fn sso_store_on_postgres() {
    let Some(fixture) = Fixture::postgres().await else { return };
    sso_contract(fixture.store.clone()).await;
    fixture.finish().await;
}
