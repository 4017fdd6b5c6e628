//! README sections as man page sections: `tcpshake generate man` writes the JSON schema into
//! tcpshake-probe(1) and the exporter's configuration and metrics into tcpshake-exporter(1),
//! from README.md itself, so `--help`'s pointers lead somewhere on a machine that has the
//! binary and its pages but no README (`cargo install`, a package).
//!
//! Only the Markdown README uses: `###` headings, paragraphs, `**bold**`, `` `code` ``,
//! fenced and indented code blocks, `- ` lists (items continued by indented lines) and pipe
//! tables (cells may hold `\|`). Tables become tagged
//! paragraphs (`.TP`), the first cell the tag: a terminal is often narrower than a table.

/// The README's section under `## {heading}`, up to the next `## ` heading; `None` when
/// the README has no such heading.
pub(super) fn section<'a>(readme: &'a str, heading: &str) -> Option<&'a str> {
    let mut start = None;
    let mut offset = 0;
    for line in readme.split_inclusive('\n') {
        let text = line.trim_end();
        if let Some(h) = text.strip_prefix("## ") {
            if start.is_some() {
                return start.map(|s| &readme[s..offset]);
            }
            if h == heading {
                start = Some(offset + line.len());
            }
        }
        offset += line.len();
    }
    start.map(|s| &readme[s..])
}

/// `md` (one section's body) as roff for the man(7) macros, starting a new paragraph.
pub(super) fn to_roff(md: &str) -> String {
    let mut out = String::new();
    let mut lines = md.lines().peekable();
    // Inside a paragraph or a list item, whose next lines continue it.
    let mut in_paragraph = false;
    while let Some(line) = lines.next() {
        let t = line.trim_end();
        if t.is_empty() {
            in_paragraph = false;
        } else if !in_paragraph && t.starts_with("    ") {
            // An indented code block: these lines and the indented ones after them.
            let mut block = vec![&t[4..]];
            while let Some(code) = lines.next_if(|l| l.starts_with("    ") || l.trim().is_empty()) {
                block.push(code.get(4..).unwrap_or(""));
            }
            while block.last().is_some_and(|l| l.trim().is_empty()) {
                block.pop();
            }
            out.push_str(".PP\n.RS 4\n.nf\n");
            block.iter().for_each(|l| out.push_str(&verbatim(l)));
            out.push_str(".fi\n.RE\n");
        } else if let Some(item) = t.strip_prefix("- ") {
            out.push_str(&format!(".IP \\(bu 2\n{}\n", guard_line(&inline(item))));
            in_paragraph = true;
        } else if let Some(h) = t.strip_prefix("### ") {
            out.push_str(&format!(".SS {}\n", inline(h)));
            in_paragraph = false;
        } else if t.starts_with("```") {
            // Verbatim, indented, unfilled; `\-` so a copied option is a minus, not a hyphen.
            out.push_str(".PP\n.RS 4\n.nf\n");
            for code in lines.by_ref() {
                if code.trim_end().starts_with("```") {
                    break;
                }
                out.push_str(&verbatim(code));
            }
            out.push_str(".fi\n.RE\n");
            in_paragraph = false;
        } else if t.starts_with('|') {
            let header = cells(t);
            // The separator row under the header.
            if lines
                .peek()
                .is_some_and(|l| l.trim_start().starts_with("|-"))
            {
                lines.next();
            }
            out.push_str(".PP\n");
            while let Some(row) = lines.next_if(|l| l.trim_start().starts_with('|')) {
                let row = cells(row);
                let Some((tag, rest)) = row.split_first() else {
                    continue;
                };
                out.push_str(&format!(".TP\n{}\n", guard_line(&inline(tag))));
                for (i, cell) in rest.iter().enumerate() {
                    if i > 0 {
                        out.push_str(".br\n");
                    }
                    // Two columns: the cell says it all. More: each cell after its heading,
                    // except the usual last one, `meaning`, which reads as the paragraph.
                    let text = match header.get(i + 1) {
                        Some(h) if header.len() > 2 && !cell.is_empty() && h != "meaning" => {
                            format!("\\fI{}\\fR: {}", escape(h), inline(cell))
                        }
                        _ => inline(cell),
                    };
                    out.push_str(&guard_line(&text));
                    out.push('\n');
                }
            }
            in_paragraph = false;
        } else {
            if !in_paragraph {
                out.push_str(".PP\n");
                in_paragraph = true;
            }
            out.push_str(&guard_line(&inline(t.trim_start())));
            out.push('\n');
        }
    }
    out
}

/// One line of a code block, as it is: `\-` so a copied option is a minus, not a hyphen.
fn verbatim(line: &str) -> String {
    format!(
        "{}\n",
        guard_line(&escape(line.trim_end()).replace('-', "\\-"))
    )
}

/// A table row's cells, outer pipes dropped, `\|` kept inside a cell as `|`.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim();
    let row = row.strip_prefix('|').unwrap_or(row);
    let row = row.strip_suffix('|').unwrap_or(row);
    let mut cells = vec![String::new()];
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cells.last_mut().into_iter().for_each(|s| s.push('|'));
            }
            '|' => cells.push(String::new()),
            _ => cells.last_mut().into_iter().for_each(|s| s.push(c)),
        }
    }
    cells.iter().map(|c| c.trim().to_string()).collect()
}

/// Text with `**strong**` and `` `code` `` in bold (man pages set literals in bold), the
/// rest escaped for roff. Bold is one state, so code inside strong text stays bold.
fn inline(md: &str) -> String {
    let mut out = String::new();
    let (mut strong, mut code, mut bold) = (false, false, false);
    let mut rest = md;
    while let Some(c) = rest.chars().next() {
        if !code && rest.starts_with("**") {
            strong = !strong;
            rest = &rest[2..];
        } else if let Some(words) = (!code).then(|| emphasis(rest)).flatten() {
            // `*words*`, in italics (within bold text, back to bold after).
            let back = if bold { "\\fB" } else { "\\fR" };
            out.push_str(&format!("\\fI{}{back}", escape(words)));
            rest = &rest[words.len() + 2..];
            continue;
        } else if c == '`' {
            code = !code;
            rest = &rest[1..];
        } else {
            let text = escape(&c.to_string());
            out.push_str(&if code { text.replace('-', "\\-") } else { text });
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if (strong || code) != bold {
            bold = strong || code;
            out.push_str(if bold { "\\fB" } else { "\\fR" });
        }
        if code && c == '`' {
            // Not hyphenated: a name split at a line's end reads as another name.
            out.push_str("\\%");
        }
    }
    if bold {
        out.push_str("\\fR");
    }
    out
}

/// The words of an emphasis that `rest` starts with (`*as here*`): a `*` right before a
/// letter, closed on the same line by a `*` right after one (so `2 * 3` and `198.18.*.1` are
/// no emphasis).
fn emphasis(rest: &str) -> Option<&str> {
    let inner = rest.strip_prefix('*')?;
    if !inner.starts_with(|c: char| c.is_alphanumeric()) {
        return None;
    }
    let end = inner.find('*')?;
    let words = &inner[..end];
    (words.ends_with(|c: char| c.is_alphanumeric()) && !words.contains('`')).then_some(words)
}

/// roff's escape character written as itself.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e")
}

/// A text line that roff would read as a request (it starts with `.` or `'`) made text.
fn guard_line(line: &str) -> String {
    if line.starts_with('.') || line.starts_with('\'') {
        format!("\\&{line}")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = include_str!("../../README.md");

    /// The requests `to_roff` writes: any other line starting with `.` or `'` would be a
    /// README line roff took for a request (and dropped or misread).
    const REQUESTS: &[&str] = &[
        ".PP",
        ".TP",
        ".SS ",
        ".RS 4",
        ".RE",
        ".nf",
        ".fi",
        ".br",
        ".IP \\(bu 2",
    ];

    fn only_our_requests(roff: &str) {
        for line in roff.lines() {
            if line.starts_with('.') || line.starts_with('\'') {
                assert!(
                    REQUESTS.iter().any(|r| line.starts_with(r)),
                    "a README line read as a roff request: {line}"
                );
            }
        }
    }

    #[test]
    fn the_json_schema_section_keeps_every_field() {
        let md = section(README, "JSON output (schema 1)").expect("README's JSON section");
        assert!(
            !md.contains("\n## "),
            "the section ends at the next ## heading"
        );
        let roff = to_roff(md);
        only_our_requests(&roff);
        // Every row of every table is a tagged paragraph with its first cell in bold.
        for row in md.lines().filter(|l| l.starts_with("| `")) {
            let tag = inline(&cells(row)[0]);
            assert!(roff.contains(&format!(".TP\n{tag}\n")), "{row}");
            assert!(tag.starts_with("\\fB\\%"), "{row}");
        }
        assert!(roff.contains(".TP\n\\fB\\%capture_lost\\fR\n"), "{roff}");
        assert!(roff.contains("\\fItype\\fR: int, or absent"), "{roff}");
        // `\|` inside a cell is one alternative of a type, not a new cell.
        assert!(
            roff.contains("\\fB\\%\"open\"\\fR | \\fB\\%\"closed\"\\fR"),
            "{roff}"
        );
    }

    #[test]
    fn the_exporter_section_keeps_its_configuration_verbatim() {
        let md = section(README, "Monitoring: `tcpshake exporter`").expect("README's exporter");
        let roff = to_roff(md);
        only_our_requests(&roff);
        assert!(
            roff.contains(".nf\n[exporter]\n"),
            "the TOML example, verbatim"
        );
        assert!(roff.contains("valid_status_codes = [200, 301]"));
        assert!(roff.contains(".SS InfluxDB line protocol\n"));
        assert!(roff.contains(".TP\n\\fB\\%tcpshake_survey_leg_seconds\\fR\n"));
    }

    #[test]
    fn markdown_becomes_roff() {
        let md = "Intro **bold `x-y` still** plain *it*, 2 * 3.\n.dot line\n\n\
                  | a | b |\n|---|---|\n| `k` | v \\| w |\n\n```\n-c 1 \\n\n```\n";
        assert_eq!(
            to_roff(md),
            ".PP\nIntro \\fBbold \\%x\\-y still\\fR plain \\fIit\\fR, 2 * 3.\n\\&.dot line\n\
             .PP\n.TP\n\\fB\\%k\\fR\nv | w\n\
             .PP\n.RS 4\n.nf\n\\-c 1 \\en\n.fi\n.RE\n"
        );
        let md = "- **a**: one\n  two\n- b\n\nafter\n\n    code -x\n\n    more\nnext\n";
        assert_eq!(
            to_roff(md),
            ".IP \\(bu 2\n\\fBa\\fR: one\ntwo\n.IP \\(bu 2\nb\n.PP\nafter\n\
             .PP\n.RS 4\n.nf\ncode \\-x\n\nmore\n.fi\n.RE\n.PP\nnext\n"
        );
        assert_eq!(section("## A\na\n## B\nb\n", "A"), Some("a\n"));
        assert_eq!(section("## A\na\n## B\nb\n", "B"), Some("b\n"));
        assert_eq!(section("## A\na\n", "C"), None);
    }
}
