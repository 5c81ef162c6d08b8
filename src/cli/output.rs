//! How the CLI prints, as Flux does: progress lines on stderr with Flux's symbols (► action,
//! ✔ success, ◎ waiting, ✗ failure; a returned error is printed with ✗ by `main`), tables on stdout with
//! upper-case headers and tab-padded columns. Pure formatting lives here, so it is unit-tested.

use std::time::Duration;

/// `► annotating Kustomization apps in flux-system namespace`
pub fn action(message: impl std::fmt::Display) {
    eprintln!("► {message}");
}

/// `✔ Kustomization annotated`
pub fn success(message: impl std::fmt::Display) {
    eprintln!("✔ {message}");
}

/// `◎ waiting for Kustomization reconciliation`
pub fn waiting(message: impl std::fmt::Display) {
    eprintln!("◎ {message}");
}

/// `✗ ...`, a failure that does not stop the command (others are returned as errors).
pub fn failure(message: impl std::fmt::Display) {
    eprintln!("✗ {message}");
}

/// A table as Flux prints it: headers upper-case, each column padded to its widest cell and
/// separated by a tab; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
                out.push('\t');
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let upper: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    let mut out = line(upper.iter().map(String::as_str).collect());
    for row in rows {
        out.push_str(&line(row.iter().take(columns).map(String::as_str).collect()));
    }
    out
}

/// Shortens hex digests of 40 to 128 characters to their first 8, as `flux get` does:
/// `main@sha1:3f9bd1a7...` becomes `main@sha1:3f9bd1a7`.
pub fn truncate_hex(text: &str) -> String {
    let is_hex = |c: char| matches!(c, '0'..='9' | 'a'..='f');
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !is_hex(chars[i]) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_hex(chars[i]) {
            i += 1;
        }
        // Only whole words count, as `\b[a-f0-9]{40,128}\b` in Flux.
        let bounded = (start == 0 || !is_word(chars[start - 1])) && (i == chars.len() || !is_word(chars[i]));
        let keep = if bounded && (40..=128).contains(&(i - start)) { start + 8 } else { i };
        out.extend(&chars[start..keep]);
    }
    out
}

/// An age as kubectl and Flux print it (`4s`, `3m20s`, `2h5m`, `3d4h`), Kubernetes'
/// `HumanDuration`.
pub fn human_duration(age: Duration) -> String {
    let seconds = age.as_secs();
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        }
    } else {
        format!("{}y", days / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_but_the_last() {
        let rows = vec![
            vec!["podinfo".to_owned(), "main@sha1:1234abcd".to_owned(), "False".to_owned(), "True".to_owned(), "stored artifact".to_owned()],
            vec!["a".to_owned(), "".to_owned(), "True".to_owned(), "False".to_owned(), "".to_owned()],
        ];
        let text = table(&["Name", "Revision", "Suspended", "Ready", "Message"], &rows);
        assert_eq!(
            text,
            "NAME   \tREVISION          \tSUSPENDED\tREADY\tMESSAGE\n\
             podinfo\tmain@sha1:1234abcd\tFalse    \tTrue \tstored artifact\n\
             a      \t                  \tTrue     \tFalse\n"
        );
    }

    #[test]
    fn long_hex_digests_are_shortened_and_short_ones_kept() {
        let sha1 = "3f9bd1a7c2e4f60812345678901234567890abcd";
        assert_eq!(truncate_hex(&format!("main@sha1:{sha1}")), "main@sha1:3f9bd1a7");
        assert_eq!(truncate_hex(&format!("Applied revision: main@sha1:{sha1}")), "Applied revision: main@sha1:3f9bd1a7");
        assert_eq!(truncate_hex("v1.2.3@sha1:abc"), "v1.2.3@sha1:abc");
        // Part of a longer word: left alone.
        assert_eq!(truncate_hex(&format!("x{sha1}")), format!("x{sha1}"));
        assert_eq!(truncate_hex(""), "");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(Duration::from_secs(4)), "4s");
        assert_eq!(human_duration(Duration::from_secs(119)), "119s");
        assert_eq!(human_duration(Duration::from_secs(200)), "3m20s");
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 300)), "3h5m");
        assert_eq!(human_duration(Duration::from_secs(30 * 3600)), "30h");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d4h");
        assert_eq!(human_duration(Duration::from_secs(100 * 86400)), "100d");
    }
}
