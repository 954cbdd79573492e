//! Operator template overrides from `SSPR_TEMPLATE_DIR`, read once at start.
//!
//! Layout: `<dir>/<locale>/<message><suffix>` with locale `en` or `fr`, message one of
//! `registration_code`, `reset_code`, `password_changed`, `admin_alert`, and suffix
//! `.subject.txt`, `.text.txt` or `.html`; or the words of a voice call,
//! `reset_voice.text.txt` and `registration_voice.text.txt`. Each file present replaces that
//! one part of the built-in templates; every other part stays built-in.
//!
//! Invariants: a file that cannot be read, is not UTF-8, is malformed, uses a placeholder its
//! message does not have, or has a name outside the layout fails the start with a
//! [`ConfigError`] naming the file. Hidden files (`.name`) are ignored.

use std::path::Path;

use sspr_runtime::ConfigError;

use crate::domain::delivery::Locale;
use crate::domain::templates::{MessageKind, Part, Templates};

/// The variable naming the override directory.
pub const TEMPLATE_DIR_VAR: &str = "SSPR_TEMPLATE_DIR";

const LOCALES: [Locale; 2] = [Locale::En, Locale::Fr];

/// The built-in templates with the overrides found in `dir`.
pub fn load(dir: &Path) -> Result<Templates, ConfigError> {
    let fail = |what: String| ConfigError::new(TEMPLATE_DIR_VAR, what);
    if !dir.is_dir() {
        return Err(fail(format!("{} is not a directory", dir.display())));
    }
    let mut templates = Templates::builtin();
    let entries =
        std::fs::read_dir(dir).map_err(|e| fail(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("cannot read {}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Some(locale) = LOCALES
            .into_iter()
            .find(|l| l.as_str() == name && path.is_dir())
        else {
            return Err(fail(format!(
                "{}: expected only the locale directories en/ and fr/",
                path.display()
            )));
        };
        let files = std::fs::read_dir(&path)
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        for file in files {
            let file = file.map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
            let file_name = file.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') {
                continue;
            }
            let file_path = file.path();
            let Some((message, part)) = which(&file_name) else {
                return Err(fail(format!(
                    "{}: unknown template file; expected <message>.subject.txt, <message>.text.txt or <message>.html with message one of registration_code, reset_code, password_changed, admin_alert; or reset_voice.text.txt, registration_voice.text.txt",
                    file_path.display()
                )));
            };
            let source = std::fs::read_to_string(&file_path)
                .map_err(|e| fail(format!("cannot read {}: {e}", file_path.display())))?;
            templates
                .override_part(message, locale, part, &source)
                .map_err(|e| fail(format!("{}: {e}", file_path.display())))?;
            tracing::info!(file = %file_path.display(), "template override loaded");
        }
    }
    Ok(templates)
}

fn which(file_name: &str) -> Option<(MessageKind, Part)> {
    MessageKind::ALL.into_iter().find_map(|m| {
        m.parts()
            .iter()
            .copied()
            .find(|p| file_name == format!("{}{}", m.as_str(), p.suffix()))
            .map(|p| (m, p))
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::templates::ChangeReason;

    fn write(dir: &Path, rel: &str, body: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }

    #[test]
    fn overrides_apply_per_file_and_fall_back_to_builtin() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "fr/password_changed.subject.txt",
            "Changement pour {{display_name}}\n",
        );
        write(dir.path(), "en/reset_code.text.txt", "Code: {{code}}\n");
        write(dir.path(), ".hidden", "ignored");
        let t = load(dir.path()).expect("loads");
        let at = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 0)
            .single()
            .expect("t");
        let m = t.password_changed(Locale::Fr, "Zoé", at, ChangeReason::SelfService, "");
        assert_eq!(m.subject, "Changement pour Zoé");
        assert!(
            m.text.contains("support informatique"),
            "built-in text kept"
        );
        let code = crate::domain::delivery::Code::parse("1234").expect("code");
        let r = t.code_email(
            crate::domain::delivery::Purpose::Reset,
            Locale::En,
            &code,
            5,
            "",
        );
        assert_eq!(r.text, "Code: 1234\n");
        assert_eq!(r.subject, "Your password reset code");
    }

    #[test]
    fn voice_words_can_be_overridden_but_only_as_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "fr/reset_voice.text.txt",
            "Code : {{spoken_code}}. Encore : {{spoken_code}}.\n",
        );
        let t = load(dir.path()).expect("loads");
        let code = crate::domain::delivery::Code::parse("1234").expect("code");
        let purpose = crate::domain::delivery::Purpose::Reset;
        assert_eq!(
            t.voice(purpose, Locale::Fr, &code, 5),
            "Code : 1, 2, 3, 4. Encore : 1, 2, 3, 4."
        );
        assert!(
            t.voice(purpose, Locale::En, &code, 5)
                .contains("I repeat: 1, 2, 3, 4.")
        );

        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "en/reset_voice.html", "<p>{{spoken_code}}</p>");
        let err = load(dir.path()).expect_err("a call has no HTML part");
        assert!(err.problem.contains("reset_voice.html"), "{}", err.problem);

        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "en/reset_voice.text.txt", "{{code}}");
        let err = load(dir.path()).expect_err("the plain code is not a voice placeholder");
        assert!(err.problem.contains("{{spoken_code}}"), "{}", err.problem);
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "en/admin_alert.html", "<p>{{code}}</p>");
        let err = load(dir.path()).expect_err("unknown placeholder");
        assert_eq!(err.variable, TEMPLATE_DIR_VAR);
        assert!(err.problem.contains("admin_alert.html"), "{}", err.problem);
        assert!(err.problem.contains("{{code}}"), "{}", err.problem);

        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "fr/reset_code.text.txt", "{{code");
        let err = load(dir.path()).expect_err("malformed");
        assert!(
            err.problem.contains("reset_code.text.txt"),
            "{}",
            err.problem
        );
        assert!(err.problem.contains("malformed"), "{}", err.problem);

        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "fr/reset.txt", "x");
        let err = load(dir.path()).expect_err("unknown file");
        assert!(err.problem.contains("reset.txt"), "{}", err.problem);

        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "de/reset_code.html", "x");
        assert!(load(dir.path()).is_err());
        assert!(load(&dir.path().join("missing")).is_err());
    }
}
