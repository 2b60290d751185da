//! Mail templates as operators write them (`<kind>.<language>.txt`: a `Subject:` line,
//! then the text) filled with values people and administrators typed (names, the
//! organisation): no panic, the subject stays one header line, and a value is never read
//! as a placeholder — the link appears exactly as often as the template asks for it.
#![no_main]

use idbridge_app::local_accounts::mail::{MailValues, Templates};
use idbridge_core::local_account::{Language, MailKind};
use libfuzzer_sys::fuzz_target;

const LINK: &str = "https://id.example/account/setup?token=SENTINEL";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (content, name) = text.split_once('\0').unwrap_or((text, "{{link}}"));
    let (name, organisation) = name.split_once('\0').unwrap_or((name, "{{name}}"));
    let mut templates = Templates::built_in();
    if templates.set_text(MailKind::Invitation, Language::En, content).is_err() {
        return;
    }
    let values = MailValues {
        operator: "ABC Telecom".into(),
        logo_url: None,
        name: name.into(),
        organisation: organisation.into(),
        link: LINK.into(),
        starts: None,
        ends: None,
        valid_for: "72 hours".into(),
    };
    let body = templates.render(MailKind::Invitation, Language::En, &values);
    assert!(!body.subject.contains(['\r', '\n']), "{:?}", body.subject);
    if !name.contains("SENTINEL") && !organisation.contains("SENTINEL") && !content.contains("SENTINEL") {
        let (_, template_text) = content.split_once('\n').unwrap_or((content, ""));
        let asked = template_text.matches("{{link}}").count();
        assert_eq!(body.text.matches("SENTINEL").count(), asked, "{content:?} {name:?} → {:?}", body.text);
    }
});
