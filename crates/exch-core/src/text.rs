//! Text from remote systems, made fit for error messages.

/// `text` trimmed, and at most 2 KiB of it (cut on a character boundary, then `…`): what a
/// server wrote (stderr, a fault, a cmdlet's message) goes into an error without flooding it.
pub fn clip(text: &str) -> String {
    const MAX: usize = 2048;
    let t = text.trim();
    if t.len() <= MAX {
        return t.to_string();
    }
    let mut end = MAX;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &t[..end])
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(clip("  short \n"), "short");
        let long = "é".repeat(2000);
        let c = clip(&long);
        assert!(c.ends_with('…') && c.len() <= 2048 + '…'.len_utf8());
    }
}
