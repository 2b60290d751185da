//! The mails sent to individuals without an IdP: built-in plain-text and HTML templates in
//! English and German, which an operator can replace from files, and the dates in them in
//! the individual's own time zone.
//!
//! A template is text with `{{name}}` placeholders; in HTML every value is escaped. Files
//! in `[local_sign_in] templates_dir` named `<kind>.<language>.txt` (first line
//! `Subject: …`) and `<kind>.<language>.html` replace the built-in ones they name.

use std::collections::BTreeMap;
use std::path::Path;

use idbridge_core::local_account::{Language, MailBody, MailKind};
use idbridge_core::schedule::LocalInstant;

/// What a mail's placeholders are filled with.
#[derive(Debug, Clone, Default)]
pub struct MailValues {
    pub operator: String,
    pub logo_url: Option<String>,
    pub name: String,
    pub organisation: String,
    /// The link (invitation, reset) or the sign-in address (notices).
    pub link: String,
    pub starts: Option<LocalInstant>,
    pub ends: Option<LocalInstant>,
    /// How long the link can be used, in words.
    pub valid_for: String,
}

#[derive(Debug, Clone)]
struct Template {
    subject: String,
    text: String,
    html: String,
}

/// The templates in use: the built-in ones with the operator's files over them.
#[derive(Debug, Clone)]
pub struct Templates {
    by: BTreeMap<(MailKind, Language), Template>,
}

const KINDS: [MailKind; 4] =
    [MailKind::Invitation, MailKind::PasswordReset, MailKind::AccessStarts, MailKind::AccessEnds];
const LANGUAGES: [Language; 2] = [Language::En, Language::De];

impl Templates {
    pub fn built_in() -> Self {
        let mut by = BTreeMap::new();
        for kind in KINDS {
            for language in LANGUAGES {
                let (subject, text) = built_in(kind, language);
                by.insert(
                    (kind, language),
                    Template { subject: subject.into(), text: text.into(), html: html_of(text) },
                );
            }
        }
        Self { by }
    }

    /// The built-in templates with those `dir` holds over them. A file that is there but
    /// cannot be read, or a text template without its `Subject:` line, is an error naming it.
    pub fn from_dir(dir: &Path) -> Result<Self, String> {
        let mut templates = Self::built_in();
        for kind in KINDS {
            for language in LANGUAGES {
                let stem = format!("{}.{}", kind.as_str(), language.as_str());
                let text_path = dir.join(format!("{stem}.txt"));
                if text_path.exists() {
                    let content = std::fs::read_to_string(&text_path)
                        .map_err(|e| format!("cannot read {}: {e}", text_path.display()))?;
                    templates
                        .set_text(kind, language, &content)
                        .map_err(|e| format!("{}: {e}", text_path.display()))?;
                }
                let html_path = dir.join(format!("{stem}.html"));
                if html_path.exists() {
                    let html = std::fs::read_to_string(&html_path)
                        .map_err(|e| format!("cannot read {}: {e}", html_path.display()))?;
                    templates.entry(kind, language).html = html;
                }
            }
        }
        Ok(templates)
    }

    fn entry(&mut self, kind: MailKind, language: Language) -> &mut Template {
        self.by.get_mut(&(kind, language)).expect("every built-in template is there")
    }

    /// Replaces a plain-text template (and the HTML made from it) with what an operator's
    /// `<kind>.<language>.txt` says: a first line `Subject: …`, then the text.
    pub fn set_text(&mut self, kind: MailKind, language: Language, content: &str) -> Result<(), String> {
        let (first, rest) = content.split_once('\n').unwrap_or((content, ""));
        let subject = first.strip_prefix("Subject:").ok_or("the first line must be `Subject: …`")?;
        let entry = self.entry(kind, language);
        entry.subject = subject.trim().to_owned();
        entry.text = rest.trim_start_matches('\n').to_owned();
        entry.html = html_of(&entry.text);
        Ok(())
    }

    pub fn render(&self, kind: MailKind, language: Language, values: &MailValues) -> MailBody {
        let template = &self.by[&(kind, language)];
        let starts = values.starts.as_ref().map(|at| local_date(at, language)).unwrap_or_default();
        let ends = values.ends.as_ref().map(|at| local_date(at, language)).unwrap_or_default();
        // A sentence of its own, so templates need no conditionals.
        let availability = match (&values.starts, language) {
            (Some(_), Language::En) => format!("Your access starts on {starts}; you can sign in from then on."),
            (Some(_), Language::De) => format!("Ihr Zugang beginnt am {starts}; ab dann können Sie sich anmelden."),
            (None, _) => String::new(),
        };
        let pairs: [(&str, &str); 9] = [
            ("operator", &values.operator),
            ("name", &values.name),
            ("organisation", &values.organisation),
            ("link", &values.link),
            ("starts", &starts),
            ("ends", &ends),
            ("availability", &availability),
            ("valid_for", &values.valid_for),
            ("logo_url", values.logo_url.as_deref().unwrap_or_default()),
        ];
        let logo = values
            .logo_url
            .as_deref()
            .map(|u| format!(r#"<img src="{}" alt="{}" height="40"><br>"#, escape(u), escape(&values.operator)))
            .unwrap_or_default();
        // A paragraph an empty sentence leaves is dropped.
        let html_body = fill(&template.html, &pairs, true).replace("<p></p>\n", "").replace("<p></p>", "");
        let html = format!(
            "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"></head><body style=\"font-family: \
             sans-serif\">{logo}{html_body}</body></html>",
            language.as_str()
        );
        // A subject is one header line: what a value brings in cannot start another.
        let subject = fill(&template.subject, &pairs, false).replace(['\r', '\n'], " ");
        MailBody { subject, text: fill(&template.text, &pairs, false), html }
    }
}

/// Puts the values in for their `{{name}}`s in one pass over the template: what a value
/// holds (a person's name written `{{link}}`) is never read as a placeholder. Unknown
/// names stay as written.
fn fill(template: &str, pairs: &[(&str, &str)], html: bool) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let known = pairs.iter().find(|(name, _)| after.strip_prefix(name).is_some_and(|tail| tail.starts_with("}}")));
        match known {
            Some((name, value)) => {
                if html {
                    out.push_str(&escape(value));
                } else {
                    out.push_str(value);
                }
                rest = &after[name.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    collapse_blank_lines(&out)
}

/// Runs of blank lines (an empty sentence leaves one) become one blank line.
fn collapse_blank_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut newlines = 0;
    for c in text.chars() {
        if c == '\n' {
            newlines += 1;
            if newlines > 2 {
                continue;
            }
        } else {
            newlines = 0;
        }
        out.push(c);
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Paragraphs of the text as HTML paragraphs; the `{{link}}` line becomes a link.
fn html_of(text: &str) -> String {
    text.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            if p.trim() == "{{link}}" {
                r#"<p><a href="{{link}}">{{link}}</a></p>"#.to_owned()
            } else {
                format!("<p>{}</p>", p.replace('\n', "<br>"))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_DE: [&str; 12] = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
];

/// `20 April 2027, 08:00 (Europe/Berlin)` / `20. April 2027, 08:00 Uhr (Europe/Berlin)`:
/// the local date-time the administrator set, in the individual's zone.
pub fn local_date(at: &LocalInstant, language: Language) -> String {
    let d = at.local;
    let month = usize::try_from(d.month() - 1).unwrap_or(0);
    // Seconds only when the instant has them: "09:00", but "09:00:25" rather than a
    // minute that has not fully begun.
    let time = if d.second() == 0 {
        format!("{:02}:{:02}", d.hour(), d.minute())
    } else {
        format!("{:02}:{:02}:{:02}", d.hour(), d.minute(), d.second())
    };
    match language {
        Language::En => format!("{} {} {}, {time} ({})", d.day(), MONTHS_EN[month], d.year(), at.time_zone),
        Language::De => format!("{}. {} {}, {time} Uhr ({})", d.day(), MONTHS_DE[month], d.year(), at.time_zone),
    }
}

/// (subject, text) of the built-in templates.
fn built_in(kind: MailKind, language: Language) -> (&'static str, &'static str) {
    match (kind, language) {
        (MailKind::Invitation, Language::En) => (
            "Your access to the {{operator}} portal",
            "Hello {{name}},\n\n{{organisation}} has given you access to the {{operator}} customer portal. Set your \
             password with this link (it works once, for {{valid_for}}):\n\n{{link}}\n\n{{availability}}\n\nIf you \
             did not expect this mail, you can ignore it.",
        ),
        (MailKind::Invitation, Language::De) => (
            "Ihr Zugang zum {{operator}}-Portal",
            "Hallo {{name}},\n\n{{organisation}} hat Ihnen Zugang zum Kundenportal von {{operator}} gegeben. Legen \
             Sie Ihr Passwort über diesen Link fest (er gilt einmal, {{valid_for}} lang):\n\n{{link}}\n\n\
             {{availability}}\n\nWenn Sie diese Nachricht nicht erwartet haben, können Sie sie ignorieren.",
        ),
        (MailKind::PasswordReset, Language::En) => (
            "Reset your {{operator}} portal password",
            "Hello {{name}},\n\nSomebody asked to reset the password of your {{operator}} portal account. Choose a \
             new one with this link (it works once, for {{valid_for}}):\n\n{{link}}\n\nIf it was not you, ignore \
             this mail: your password stays as it is.",
        ),
        (MailKind::PasswordReset, Language::De) => (
            "Passwort für das {{operator}}-Portal zurücksetzen",
            "Hallo {{name}},\n\njemand hat darum gebeten, das Passwort Ihres Kontos im {{operator}}-Portal \
             zurückzusetzen. Wählen Sie über diesen Link ein neues (er gilt einmal, {{valid_for}} lang):\n\n\
             {{link}}\n\nWaren Sie das nicht, ignorieren Sie diese Nachricht: Ihr Passwort bleibt unverändert.",
        ),
        (MailKind::AccessStarts, Language::En) => (
            "Your {{operator}} portal access has started",
            "Hello {{name}},\n\nyour access to the {{operator}} customer portal for {{organisation}} started on \
             {{starts}}. Sign in here:\n\n{{link}}",
        ),
        (MailKind::AccessStarts, Language::De) => (
            "Ihr Zugang zum {{operator}}-Portal hat begonnen",
            "Hallo {{name}},\n\nIhr Zugang zum Kundenportal von {{operator}} für {{organisation}} hat am {{starts}} \
             begonnen. Hier melden Sie sich an:\n\n{{link}}",
        ),
        (MailKind::AccessEnds, Language::En) => (
            "Your {{operator}} portal access ends on {{ends}}",
            "Hello {{name}},\n\nyour access to the {{operator}} customer portal for {{organisation}} ends on \
             {{ends}}. If you still need it after that, ask your administrator at {{organisation}}.",
        ),
        (MailKind::AccessEnds, Language::De) => (
            "Ihr Zugang zum {{operator}}-Portal endet am {{ends}}",
            "Hallo {{name}},\n\nIhr Zugang zum Kundenportal von {{operator}} für {{organisation}} endet am {{ends}}. \
             Brauchen Sie ihn danach noch, wenden Sie sich an Ihre Administration bei {{organisation}}.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> MailValues {
        MailValues {
            operator: "ABC Telecom".into(),
            logo_url: Some("https://abc.example/logo.png".into()),
            name: "Adam <Miller>".into(),
            organisation: "Example GmbH".into(),
            link: "https://idbridge.example/account/setup?token=t0k3n".into(),
            starts: Some(LocalInstant::parse("2027-04-20T08:00", "Europe/Berlin").unwrap()),
            ends: None,
            valid_for: "72 hours".into(),
        }
    }

    #[test]
    fn an_invitation_names_the_start_in_the_individuals_zone_and_language() {
        let t = Templates::built_in();
        let en = t.render(MailKind::Invitation, Language::En, &values());
        assert!(en.text.contains("Your access starts on 20 April 2027, 08:00 (Europe/Berlin)"), "{}", en.text);
        assert!(en.text.contains("https://idbridge.example/account/setup?token=t0k3n"));
        let de = t.render(MailKind::Invitation, Language::De, &values());
        assert!(de.text.contains("20. April 2027, 08:00 Uhr (Europe/Berlin)"), "{}", de.text);
        assert_eq!(de.subject, "Ihr Zugang zum ABC Telecom-Portal");
    }

    #[test]
    fn html_escapes_every_value_and_text_leaves_no_gap_for_a_missing_sentence() {
        let t = Templates::built_in();
        let body = t.render(MailKind::Invitation, Language::En, &MailValues { starts: None, ..values() });
        assert!(body.html.contains("Adam &lt;Miller&gt;"), "{}", body.html);
        assert!(body.html.contains(r#"<a href="https://idbridge.example/account/setup?token=t0k3n">"#));
        assert!(body.html.contains(r#"<img src="https://abc.example/logo.png""#));
        assert!(!body.text.contains("\n\n\n"), "{}", body.text);
        assert!(!body.text.contains("starts on"));
    }

    #[test]
    fn an_operators_file_replaces_its_template_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("invitation.en.txt"), "Subject: Welcome, {{name}}\n\nGo to {{link}}").unwrap();
        let t = Templates::from_dir(dir.path()).unwrap();
        let body = t.render(MailKind::Invitation, Language::En, &values());
        assert_eq!(body.subject, "Welcome, Adam <Miller>");
        assert_eq!(body.text, "Go to https://idbridge.example/account/setup?token=t0k3n");
        std::fs::write(dir.path().join("invitation.de.txt"), "no subject line").unwrap();
        assert!(Templates::from_dir(dir.path()).unwrap_err().contains("invitation.de.txt"));
    }

    #[test]
    fn what_a_value_holds_is_never_read_as_a_placeholder() {
        let mut t = Templates::built_in();
        t.set_text(MailKind::Invitation, Language::En, "Subject: Hi {{name}}\n\n{{{name}}} {{nope}} {{link}}").unwrap();
        let body = t.render(
            MailKind::Invitation,
            Language::En,
            &MailValues { name: "{{link}}\r\nBcc: someone@else.example".into(), ..values() },
        );
        assert_eq!(body.subject, "Hi {{link}}  Bcc: someone@else.example", "one header line");
        assert_eq!(body.text.matches("token=t0k3n").count(), 1, "{}", body.text);
        assert!(body.text.starts_with("{{{link}}\r\nBcc"), "{}", body.text);
        assert!(body.text.contains("{{nope}}"), "unknown names stay as written");
    }
}
