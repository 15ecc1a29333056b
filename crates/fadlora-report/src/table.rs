//! A table of formatted cells, rendered as a GitHub Markdown pipe table or a booktabs LaTeX
//! `tabular`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub headers: Vec<(String, Align)>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&str, Align)]) -> Self {
        Table {
            headers: headers.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
    }

    /// GitHub-flavoured Markdown.
    pub fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|");
        let mut out = String::new();
        out.push_str("| ");
        out.push_str(
            &self
                .headers
                .iter()
                .map(|(h, _)| cell(h))
                .collect::<Vec<_>>()
                .join(" | "),
        );
        out.push_str(" |\n|");
        for (_, align) in &self.headers {
            out.push_str(match align {
                Align::Left => " :--- |",
                Align::Right => " ---: |",
            });
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str("| ");
            out.push_str(&row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
            out.push_str(" |\n");
        }
        out
    }

    /// A booktabs `tabular` (needs `\usepackage{booktabs}`).
    pub fn latex(&self) -> String {
        let spec: String = self
            .headers
            .iter()
            .map(|(_, a)| match a {
                Align::Left => 'l',
                Align::Right => 'r',
            })
            .collect();
        let line = |cells: Vec<String>| format!("{} \\\\\n", cells.join(" & "));
        let mut out = String::from("% Written by fadlora-report. Needs \\usepackage{booktabs}.\n");
        out.push_str(&format!("\\begin{{tabular}}{{{spec}}}\n\\toprule\n"));
        out.push_str(&line(
            self.headers.iter().map(|(h, _)| latex_escape(h)).collect(),
        ));
        out.push_str("\\midrule\n");
        for row in &self.rows {
            out.push_str(&line(row.iter().map(|c| latex_escape(c)).collect()));
        }
        out.push_str("\\bottomrule\n\\end{tabular}\n");
        out
    }
}

/// Escapes LaTeX's special characters for text mode; `±` becomes `$\pm$`.
pub(crate) fn latex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            '×' => out.push_str("$\\times$"),
            _ => out.push(c),
        }
    }
    out
}

/// `12.34 ± 0.56`; the mean alone when there is no spread (one seed); `-` when missing.
pub(crate) fn mean_std(mean: Option<f64>, std: Option<f64>, decimals: usize) -> String {
    match (
        mean.filter(|m| m.is_finite()),
        std.filter(|s| s.is_finite()),
    ) {
        (None, _) => "-".into(),
        (Some(m), None) => format!("{m:.decimals$}"),
        (Some(m), Some(s)) => format!("{m:.decimals$} ± {s:.decimals$}"),
    }
}

/// `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn opt(value: Option<f64>, decimals: usize) -> String {
    match value.filter(|v| v.is_finite()) {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latex_escapes_specials() {
        assert_eq!(latex_escape("dev_eer 5% a&b"), "dev\\_eer 5\\% a\\&b");
        assert_eq!(latex_escape("1.0 ± 0.5"), "1.0 $\\pm$ 0.5");
        assert_eq!(latex_escape("a\\b"), "a\\textbackslash{}b");
    }

    #[test]
    fn markdown_and_latex_shapes() {
        let mut t = Table::new(&[("Group", Align::Left), ("EER %", Align::Right)]);
        t.push(vec!["lora_q|v".into(), "1.00 ± 0.10".into()]);
        let md = t.markdown();
        assert_eq!(
            md,
            "| Group | EER % |\n| :--- | ---: |\n| lora_q\\|v | 1.00 ± 0.10 |\n"
        );
        let tex = t.latex();
        assert!(tex.contains("\\begin{tabular}{lr}"));
        assert!(tex.contains("Group & EER \\% \\\\"));
        assert!(tex.contains("lora\\_q|v & 1.00 $\\pm$ 0.10 \\\\"));
        assert!(
            tex.contains("\\toprule") && tex.contains("\\midrule") && tex.contains("\\bottomrule")
        );
    }

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(94_396_930), "94,396,930");
        assert_eq!(mean_std(Some(13.0), Some(2f64.sqrt()), 2), "13.00 ± 1.41");
        assert_eq!(mean_std(Some(17.0), None, 2), "17.00");
        assert_eq!(mean_std(None, None, 2), "-");
    }
}
