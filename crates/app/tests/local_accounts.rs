//! Local accounts over a real store (SQLite and PostgreSQL), driven by a manual clock:
//! links that expire and are used once (also when two requests race), lockout and its
//! release, a tenant that stops allowing local sign-in, and the expiry notice — once per
//! expiration date, once across two instances, again when the date moves.

// The store's own test fixture: a fresh SQLite or PostgreSQL database per test, and the
// macro that runs a test on both.
#[path = "../../store/tests/common/mod.rs"]
#[macro_use]
mod common;

use common::Fixture;

use std::sync::Arc;

use idbridge_app::local_accounts::mail::Templates;
use idbridge_app::local_accounts::notices;
use idbridge_app::local_accounts::secrets::{HashCost, PasswordRules};
use idbridge_app::local_accounts::{LocalAccounts, LocalRefusal, LocalSettings, SetPasswordError};
use idbridge_app::sealing::KeyEncryption;
use idbridge_core::audit::{Actor, ActorKind, AuditContext};
use idbridge_core::changeset::PlannedWrite;
use idbridge_core::clock::{Clock, ManualClock};
use idbridge_core::individual::{Individual, IndividualId, IndividualStatus, SourceKind, SourceLink};
use idbridge_core::local_account::{Mail, MailKind};
use idbridge_core::ports::Store;
use idbridge_core::reconcile::Reconciler;
use idbridge_core::schedule::LocalInstant;
use idbridge_core::tenant::{Tenant, TenantId, TenantSettings, TenantSlug};
use idbridge_store::SqlStore;
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

contract!(
    an_invitation_link_expires_and_is_used_once,
    two_requests_racing_for_one_link_set_one_password,
    lockout_pauses_the_account_and_releases_after_the_back_off,
    a_tenant_that_stops_allowing_local_sign_in_lets_nobody_in,
    the_expiry_notice_comes_once_per_date_and_again_when_the_date_moves,
    a_totp_secret_is_sealed_at_rest_and_a_code_is_good_once,
    each_person_is_written_to_in_their_own_language,
    a_passkey_answer_that_does_not_verify_is_refused_and_counted,
);

const PASSWORD: &str = "lantern orbit cactus fjord";

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn operator() -> AuditContext {
    AuditContext::new(Actor::new(ActorKind::Operator, "test"))
}

/// Everything one test needs: the store, a clock it moves, the use cases on both.
struct World {
    store: Arc<dyn Store>,
    reconciler: Reconciler,
    clock: Arc<ManualClock>,
    accounts: LocalAccounts,
    tenant: Tenant,
}

impl World {
    async fn new(sql: SqlStore, start: &str) -> Self {
        let store: Arc<dyn Store> = Arc::new(sql.clone());
        let reconciler = Reconciler::new(&sql);
        let clock = Arc::new(ManualClock::new(at(start)));
        let settings = LocalSettings {
            public_url: "https://id.abc.example".into(),
            operator_name: "ABC Telecom".into(),
            logo_url: None,
            // Cheap hashes: these tests are about time, not cost.
            cost: HashCost { memory_kib: 1024, iterations: 1, parallelism: 1 },
            rules: PasswordRules::default(),
            templates: Templates::built_in(),
            sealing: Some(KeyEncryption::from_text(&"ab".repeat(32)).unwrap()),
            passkeys: idbridge_app::local_accounts::passkeys::Relying::for_public_url(
                "https://id.abc.example",
                "ABC Telecom",
            )
            .unwrap(),
        };
        let accounts = LocalAccounts::with_clock(store.clone(), settings, clock.clone());
        let mut tenant_settings = TenantSettings::new("Small Co");
        tenant_settings.policy.local_sign_in.allowed = true;
        tenant_settings.policy.local_sign_in.expiry_notice_days = 7;
        let tenant = store
            .create_tenant(
                TenantId(Uuid::new_v4()),
                &TenantSlug::parse("smallco").unwrap(),
                &tenant_settings,
                &operator(),
            )
            .await
            .unwrap();
        Self { store, reconciler, clock, accounts, tenant }
    }

    /// An individual made by hand (no IdP behind them), as an operator would.
    async fn person(&self, login: &str, expiration: Option<&str>) -> Individual {
        self.person_in(login, expiration, None).await
    }

    /// As `person`, written to in `language` (a tag) rather than the tenant's.
    async fn person_in(&self, login: &str, expiration: Option<&str>, language: Option<&str>) -> Individual {
        let now = self.clock.now();
        let after = Individual {
            id: IndividualId(Uuid::new_v4()),
            tenant_id: self.tenant.id,
            login: login.into(),
            email: Some(login.into()),
            given_name: Some("Bob".into()),
            family_name: None,
            display_name: None,
            role: Some("Customer admin".into()),
            access_profile: None,
            scopes: Default::default(),
            time_zone: "Europe/Berlin".into(),
            language: language.map(str::to_owned),
            activation: None,
            expiration: expiration.map(|e| LocalInstant::parse(e, "Europe/Berlin").unwrap()),
            status: IndividualStatus::Active,
            links: vec![SourceLink {
                source: SourceKind::Manual,
                connection: "manual".into(),
                external_id: login.into(),
            }],
            deprovisioned_at: None,
            access_ended_at: None,
            provenance: Default::default(),
            version: 0,
            created_at: now,
            updated_at: now,
        };
        let write = PlannedWrite { before: None, after, action: "individual.created".into() };
        let report = self.reconciler.commit(&self.tenant, vec![write], &operator()).await.unwrap();
        let (id, _) = report.written[0];
        self.store.get_individual(self.tenant.id, id).await.unwrap().unwrap()
    }

    async fn move_expiration(&self, individual: &Individual, expiration: &str) -> Individual {
        let mut after = individual.clone();
        after.expiration = Some(LocalInstant::parse(expiration, "Europe/Berlin").unwrap());
        let write = PlannedWrite { before: Some(individual.clone()), after, action: "individual.updated".into() };
        let report = self.reconciler.commit(&self.tenant, vec![write], &operator()).await.unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        self.store.get_individual(self.tenant.id, individual.id).await.unwrap().unwrap()
    }

    fn advance(&self, by: SignedDuration) {
        self.clock.advance(by);
    }

    async fn mails(&self, individual: &Individual, kind: MailKind) -> Vec<Mail> {
        let mails = self.accounts.mails(&self.tenant, Some(individual.id), 100).await.unwrap();
        mails.into_iter().filter(|m| m.kind == kind).collect()
    }

    /// The token of the newest link mailed to `individual`.
    async fn token(&self, individual: &Individual) -> String {
        let mails = self.accounts.mails(&self.tenant, Some(individual.id), 1).await.unwrap();
        let text = &mails[0].body.as_ref().expect("a mail not sent yet keeps its body").text;
        text.split("token=").nth(1).unwrap().split(|c: char| c.is_whitespace()).next().unwrap().to_owned()
    }

    async fn invited_with_password(&self, login: &str) -> Individual {
        let individual = self.person(login, None).await;
        self.accounts.invite(&operator(), &self.tenant, &individual).await.unwrap();
        let token = self.token(&individual).await;
        self.accounts.set_password(&token, PASSWORD).await.unwrap();
        individual
    }
}

async fn an_invitation_link_expires_and_is_used_once(sql: SqlStore) {
    let w = World::new(sql, "2027-04-01T08:00:00Z").await;
    let bob = w.person("bob@smallco.example", None).await;
    w.accounts.invite(&operator(), &w.tenant, &bob).await.unwrap();
    let first = w.token(&bob).await;
    assert_eq!(w.mails(&bob, MailKind::Invitation).await.len(), 1, "the link and its mail are queued together");

    // 72 hours later the link is gone: the page and the password step both say so.
    w.advance(SignedDuration::from_hours(72) + SignedDuration::from_secs(1));
    assert!(w.accounts.link(&first).await.unwrap().is_none());
    assert!(matches!(w.accounts.set_password(&first, PASSWORD).await, Err(SetPasswordError::Gone)));

    // A new invitation; the old link stays dead, the new one works once.
    w.accounts.invite(&operator(), &w.tenant, &bob).await.unwrap();
    let second = w.token(&bob).await;
    assert_ne!(first, second);
    assert!(matches!(w.accounts.set_password(&first, PASSWORD).await, Err(SetPasswordError::Gone)));
    let passed = w.accounts.set_password(&second, PASSWORD).await.unwrap();
    assert!(passed.must_enrol, "the tenant requires a second factor by default");
    assert!(matches!(w.accounts.set_password(&second, "another fine passphrase").await, Err(SetPasswordError::Gone)));
    assert!(w.accounts.check_password("bob@smallco.example", PASSWORD, None).await.is_ok());

    // Asked for again, Bob gets a reset link (he has a password), valid 30 minutes.
    w.accounts.request_reset("BOB@smallco.example").await.unwrap();
    let reset = w.token(&bob).await;
    assert_eq!(w.mails(&bob, MailKind::PasswordReset).await.len(), 1);
    w.advance(SignedDuration::from_mins(31));
    assert!(matches!(w.accounts.set_password(&reset, "another fine passphrase").await, Err(SetPasswordError::Gone)));
    assert!(w.accounts.check_password("bob@smallco.example", PASSWORD, None).await.is_ok(), "the old one still works");
}

async fn two_requests_racing_for_one_link_set_one_password(sql: SqlStore) {
    let w = World::new(sql, "2027-04-01T08:00:00Z").await;
    let bob = w.person("bob@smallco.example", None).await;
    w.accounts.invite(&operator(), &w.tenant, &bob).await.unwrap();
    let token = w.token(&bob).await;
    let (a, b) = tokio::join!(
        w.accounts.set_password(&token, "first racer passphrase"),
        w.accounts.set_password(&token, "second racer passphrase"),
    );
    let won: Vec<&str> = [(a.is_ok(), "first racer passphrase"), (b.is_ok(), "second racer passphrase")]
        .into_iter()
        .filter_map(|(ok, p)| ok.then_some(p))
        .collect();
    assert_eq!(won.len(), 1, "one link, one password: {a:?} {b:?}");
    let lost = if won[0].starts_with("first") { "second racer passphrase" } else { "first racer passphrase" };
    assert!(w.accounts.check_password("bob@smallco.example", won[0], None).await.is_ok());
    assert!(w.accounts.check_password("bob@smallco.example", lost, None).await.is_err());
}

async fn lockout_pauses_the_account_and_releases_after_the_back_off(sql: SqlStore) {
    let w = World::new(sql, "2027-04-01T08:00:00Z").await;
    w.invited_with_password("bob@smallco.example").await;
    let mut locked_until = None;
    for attempt in 1..=10 {
        match w.accounts.check_password("bob@smallco.example", "not the password at all", None).await {
            Err(LocalRefusal::Wrong) => {}
            Err(LocalRefusal::Locked(until)) => {
                locked_until = Some((attempt, until));
                break;
            }
            other => panic!("attempt {attempt}: {other:?}"),
        }
    }
    let (attempt, until) = locked_until.expect("wrong passwords lock the account");
    assert!(attempt <= 6, "locked after {attempt} attempts");
    // Even the right password waits until the pause is over, from any client address.
    let right = w.accounts.check_password("bob@smallco.example", PASSWORD, Some([10, 0, 0, 9].into())).await;
    assert!(matches!(right, Err(LocalRefusal::Locked(u)) if u == until), "{right:?}");
    w.clock.set(until + SignedDuration::from_secs(1));
    let passed = w.accounts.check_password("bob@smallco.example", PASSWORD, None).await.unwrap();
    assert_eq!(passed.individual.login, "bob@smallco.example");
    // The success starts the count again: one wrong password does not lock.
    assert!(matches!(
        w.accounts.check_password("bob@smallco.example", "wrong once more", None).await,
        Err(LocalRefusal::Wrong)
    ));
    assert!(w.accounts.check_password("bob@smallco.example", PASSWORD, None).await.is_ok());
}

async fn a_tenant_that_stops_allowing_local_sign_in_lets_nobody_in(sql: SqlStore) {
    let w = World::new(sql, "2027-04-01T08:00:00Z").await;
    let bob = w.invited_with_password("bob@smallco.example").await;
    let mut settings = w.tenant.settings();
    settings.policy.local_sign_in.allowed = false;
    let tenant = w.store.update_tenant(w.tenant.id, w.tenant.version, &settings, &operator()).await.unwrap();

    let right = w.accounts.check_password("bob@smallco.example", PASSWORD, None).await;
    assert!(matches!(right, Err(LocalRefusal::Wrong)), "the same answer as an unknown address: {right:?}");
    let steve = w.person("steve@smallco.example", None).await;
    let refused = w.accounts.invite(&operator(), &tenant, &steve).await.unwrap_err();
    assert!(refused.to_string().contains("does not allow local sign-in"), "{refused}");
    let before = w.accounts.mails(&tenant, Some(bob.id), 100).await.unwrap().len();
    w.accounts.request_reset("bob@smallco.example").await.unwrap();
    assert_eq!(w.accounts.mails(&tenant, Some(bob.id), 100).await.unwrap().len(), before, "no reset link either");
}

async fn the_expiry_notice_comes_once_per_date_and_again_when_the_date_moves(sql: SqlStore) {
    let w = World::new(sql, "2027-04-01T08:00:00Z").await;
    let bob = w.person("bob@smallco.example", Some("2027-04-20")).await;
    w.accounts.invite(&operator(), &w.tenant, &bob).await.unwrap();
    let nobody = w.person("steve@smallco.example", Some("2027-04-20")).await; // never invited
    let store = w.store.as_ref();

    // Nineteen days before: outside the tenant's seven.
    assert_eq!(notices::expiry_pass(&w.accounts, store).await.unwrap(), 0);
    // Six days before (local midnight in Berlin is 22:00 UTC the day before).
    w.clock.set(at("2027-04-13T08:00:00Z"));
    // Two instances at once: one notice.
    let (a, b) = tokio::join!(notices::expiry_pass(&w.accounts, store), notices::expiry_pass(&w.accounts, store));
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    let told = w.mails(&bob, MailKind::AccessEnds).await;
    assert_eq!(told.len(), 1);
    let text = &told[0].body.as_ref().unwrap().text;
    assert!(text.contains("ends on 20 April 2027"), "{text}");
    assert!(w.mails(&nobody, MailKind::AccessEnds).await.is_empty(), "no credential, no notice");
    assert_eq!(notices::expiry_pass(&w.accounts, store).await.unwrap(), 0, "once per date");

    // Extended: told again when the new date comes near, not before.
    let bob = w.move_expiration(&bob, "2027-05-31").await;
    assert_eq!(notices::expiry_pass(&w.accounts, store).await.unwrap(), 0);
    w.clock.set(at("2027-05-26T08:00:00Z"));
    assert_eq!(notices::expiry_pass(&w.accounts, store).await.unwrap(), 1);
    let told = w.mails(&bob, MailKind::AccessEnds).await;
    assert_eq!(told.len(), 2);
    assert!(told[0].body.as_ref().unwrap().text.contains("ends on 31 May 2027"));
    // After the expiration nobody is told any more.
    w.clock.set(at("2027-06-02T08:00:00Z"));
    assert_eq!(notices::expiry_pass(&w.accounts, store).await.unwrap(), 0);
}

async fn each_person_is_written_to_in_their_own_language(sql: SqlStore) {
    let w = World::new(sql, "2027-04-01T08:00:00Z").await;
    assert_eq!(w.tenant.policy.local_sign_in.language, "en");
    let anna = w.person_in("anna@smallco.example", Some("2027-04-05"), Some("de-AT")).await;
    assert_eq!(anna.language.as_deref(), Some("de-AT"), "the store keeps the tag");
    let bob = w.person("bob@smallco.example", Some("2027-04-05")).await;
    // A tag no template speaks falls back to the tenant's language.
    let chloe = w.person_in("chloe@smallco.example", Some("2027-04-05"), Some("fr")).await;
    for person in [&anna, &bob, &chloe] {
        w.accounts.invite(&operator(), &w.tenant, person).await.unwrap();
    }
    let subject = |mails: Vec<Mail>| mails[0].body.as_ref().unwrap().subject.clone();
    assert_eq!(subject(w.mails(&anna, MailKind::Invitation).await), "Ihr Zugang zum ABC Telecom-Portal");
    assert_eq!(subject(w.mails(&bob, MailKind::Invitation).await), "Your access to the ABC Telecom portal");
    assert_eq!(subject(w.mails(&chloe, MailKind::Invitation).await), "Your access to the ABC Telecom portal");
    assert_eq!(notices::expiry_pass(&w.accounts, w.store.as_ref()).await.unwrap(), 3);
    let text = |mails: Vec<Mail>| mails[0].body.as_ref().unwrap().text.clone();
    let anna_told = text(w.mails(&anna, MailKind::AccessEnds).await);
    assert!(anna_told.contains("endet am 5. April 2027"), "{anna_told}");
    let bob_told = text(w.mails(&bob, MailKind::AccessEnds).await);
    assert!(bob_told.contains("ends on 5 April 2027"), "{bob_told}");
}

/// Registration and assertion answers that do not verify (forged, garbled, or for a
/// ceremony the page never had) register nothing, sign nobody in, and count as wrong
/// codes towards the lockout. (A real authenticator's answers: the Chromium test.)
async fn a_passkey_answer_that_does_not_verify_is_refused_and_counted(sql: SqlStore) {
    let w = World::new(sql, "2027-04-01T08:00:00Z").await;
    let bob = w.invited_with_password("bob@smallco.example").await;
    let ceremony = w.accounts.begin_passkey(&w.tenant, &bob).await.unwrap().expect("passkeys are offered");
    let options: serde_json::Value = serde_json::from_str(&ceremony.options).unwrap();
    assert_eq!(options["publicKey"]["rp"]["id"], "id.abc.example");
    let forged = r#"{"id":"AAAA","rawId":"AAAA","type":"public-key","extensions":{},
        "response":{"attestationObject":"AAAA","clientDataJSON":"AAAA","transports":[]}}"#;
    for answer in [forged, "{}", "not json"] {
        let refused = w.accounts.confirm_passkey(&w.tenant, &bob, &ceremony.state, answer).await;
        assert!(matches!(refused, Err(LocalRefusal::WrongPasskey)), "{refused:?}");
    }
    let credential = w.store.get_local_credential(w.tenant.id, bob.id).await.unwrap().unwrap();
    assert!(credential.passkeys.is_empty() && !credential.has_second_factor(), "nothing registered");
    // Nobody has a passkey to assert with: no ceremony is offered at the second step.
    assert!(w.accounts.begin_passkey_check(&w.tenant, bob.id).await.unwrap().is_none());
    let assertion = r#"{"id":"AAAA","rawId":"AAAA","type":"public-key","extensions":{},
        "response":{"authenticatorData":"AAAA","clientDataJSON":"AAAA","signature":"AAAA","userHandle":null}}"#;
    let mut locked = false;
    for _ in 0..8 {
        match w.accounts.check_passkey(&w.tenant, bob.id, &ceremony.state, assertion).await {
            Err(LocalRefusal::WrongPasskey) => {}
            Err(LocalRefusal::Locked(_)) => locked = true,
            other => panic!("{other:?}"),
        }
    }
    assert!(locked, "failed assertions lock the account like wrong codes");
}

fn code(secret: &str, at: Timestamp) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, String::new());
    totp.generate(u64::try_from(at.as_second()).unwrap())
}

async fn a_totp_secret_is_sealed_at_rest_and_a_code_is_good_once(sql: SqlStore) {
    let w = World::new(sql, "2027-04-01T08:00:00Z").await;
    let bob = w.invited_with_password("bob@smallco.example").await;
    let enrolment = w.accounts.begin_totp(&w.tenant, &bob).await.unwrap();
    let stored = w.store.get_local_credential(w.tenant.id, bob.id).await.unwrap().unwrap();
    let at_rest = stored.totp_secret.unwrap();
    assert!(at_rest.starts_with("enc:v1:") && !at_rest.contains(&enrolment.secret), "{at_rest}");
    assert_eq!(w.accounts.pending_totp_secret(&w.tenant, &bob).await.unwrap().as_deref(), Some(&*enrolment.secret));
    let now = w.clock.now();
    let codes = w.accounts.confirm_totp(&w.tenant, &bob, &code(&enrolment.secret, now)).await.unwrap();
    assert_eq!(codes.len(), 10);
    // The step the enrolment used is spent; the next one signs in, once.
    let same = w.accounts.check_second_factor(&w.tenant, bob.id, &code(&enrolment.secret, now)).await;
    assert!(matches!(same, Err(LocalRefusal::WrongCode)), "{same:?}");
    w.advance(SignedDuration::from_secs(30));
    let next = code(&enrolment.secret, w.clock.now());
    w.accounts.check_second_factor(&w.tenant, bob.id, &next).await.unwrap();
    assert!(matches!(w.accounts.check_second_factor(&w.tenant, bob.id, &next).await, Err(LocalRefusal::WrongCode)));
    // A recovery code works once.
    w.accounts.check_second_factor(&w.tenant, bob.id, &codes[0]).await.unwrap();
    assert!(w.accounts.check_second_factor(&w.tenant, bob.id, &codes[0]).await.is_err());
}
