//! Expression-mode parsing (operators, casts, member access, literals).

use super::{is_name_char, is_squote, PResult, Parser};
use crate::ps::ast::{BinOp, Expr, Pipeline, Span};

impl Parser<'_> {
    pub(super) fn expression(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.logical();
        self.depth -= 1;
        r
    }

    /// Peeks a `-word` operator after blanks; returns it lowercased with its length.
    pub(super) fn peek_word_operator(&mut self) -> Option<(String, usize)> {
        let r = self.rest();
        let body = r.strip_prefix('-')?;
        let word: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if word.is_empty() {
            return None;
        }
        Some((word.to_ascii_lowercase(), word.len() + 1))
    }

    pub(super) fn logical(&mut self) -> PResult<Expr> {
        let mut left = self.comparison()?;
        loop {
            let save = self.pos;
            self.skip_ws();
            let start = self.pos;
            let op = match self.peek_word_operator() {
                Some((w, n)) if w == "and" || w == "or" => {
                    self.pos += n;
                    if w == "and" {
                        BinOp::And
                    } else {
                        BinOp::Or
                    }
                }
                _ => {
                    self.pos = save;
                    return Ok(left);
                }
            };
            self.skip_ws_nl();
            let right = self.comparison()?;
            left = Expr::Binary(
                op,
                Box::new(left),
                Box::new(right),
                Span {
                    start,
                    end: self.pos,
                },
            );
        }
    }

    pub(super) fn comparison(&mut self) -> PResult<Expr> {
        let mut left = self.additive()?;
        loop {
            let save = self.pos;
            self.skip_ws();
            let start = self.pos;
            let op = match self.peek_word_operator() {
                Some((w, n)) => {
                    let op = match w.trim_start_matches('i') {
                        "eq" => BinOp::Eq,
                        "ne" => BinOp::Ne,
                        "gt" => BinOp::Gt,
                        "ge" => BinOp::Ge,
                        "lt" => BinOp::Lt,
                        "le" => BinOp::Le,
                        "and" | "or" => {
                            self.pos = save;
                            return Ok(left);
                        }
                        _ => {
                            return self.err(
                                start,
                                "UnexpectedToken",
                                format!("Unexpected token '-{w}' in expression or statement."),
                            )
                        }
                    };
                    self.pos += n;
                    op
                }
                None => {
                    self.pos = save;
                    return Ok(left);
                }
            };
            self.skip_ws_nl();
            let right = self.additive()?;
            left = Expr::Binary(
                op,
                Box::new(left),
                Box::new(right),
                Span {
                    start,
                    end: self.pos,
                },
            );
        }
    }

    pub(super) fn additive(&mut self) -> PResult<Expr> {
        let mut left = self.unary()?;
        loop {
            let save = self.pos;
            self.skip_ws();
            let start = self.pos;
            let op = match self.peek() {
                Some('+') if self.peek2() != Some('=') => BinOp::Add,
                Some('-')
                    if !self
                        .peek2()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '=') =>
                {
                    BinOp::Sub
                }
                _ => {
                    self.pos = save;
                    return Ok(left);
                }
            };
            self.pos += 1;
            self.skip_ws_nl();
            if self.at_statement_end() {
                let sym = if op == BinOp::Add { '+' } else { '-' };
                return self.err(
                    self.pos,
                    "ExpectedValueExpression",
                    format!("You must provide a value expression following the '{sym}' operator."),
                );
            }
            let right = self.unary()?;
            left = Expr::Binary(
                op,
                Box::new(left),
                Box::new(right),
                Span {
                    start,
                    end: self.pos,
                },
            );
        }
    }

    pub(super) fn unary(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    pub(super) fn unary_inner(&mut self) -> PResult<Expr> {
        self.skip_ws();
        if let Some((w, n)) = self.peek_word_operator() {
            if w == "not" {
                self.pos += n;
                self.skip_ws_nl();
                return Ok(Expr::Not(Box::new(self.unary()?)));
            }
            return self.unexpected();
        }
        match self.peek() {
            Some('!') => {
                self.pos += 1;
                self.skip_ws();
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some('-') => {
                self.pos += 1;
                self.skip_ws();
                Ok(Expr::Neg(Box::new(self.unary()?)))
            }
            _ => self.comma(),
        }
    }

    pub(super) fn comma(&mut self) -> PResult<Expr> {
        let first = self.cast()?;
        let mut items = vec![first];
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.peek() == Some(',') {
                self.pos += 1;
                self.skip_ws_nl();
                items.push(self.cast()?);
            } else {
                self.pos = save;
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::List(items)
        })
    }

    pub(super) fn type_literal(&mut self) -> PResult<String> {
        let start = self.pos;
        self.expect('[', "MissingTypename", "Missing type name after '['.")?;
        let name_start = self.pos;
        while self.peek().is_some_and(|c| is_name_char(c) || c == '.') {
            self.bump();
        }
        let mut name = self.src[name_start..self.pos].to_string();
        if self.rest().starts_with("[]") {
            self.pos += 2;
            name.push_str("[]");
        }
        if name.is_empty() {
            return self.err(start, "MissingTypename", "Missing type name after '['.");
        }
        self.expect(
            ']',
            "EndSquareBracketExpectedAtEndOfAttribute",
            "Missing ']' at end of type literal.",
        )?;
        Ok(name)
    }

    pub(super) fn cast(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.cast_inner();
        self.depth -= 1;
        r
    }

    pub(super) fn cast_inner(&mut self) -> PResult<Expr> {
        self.skip_ws();
        if self.peek() != Some('[') {
            let p = self.primary()?;
            return self.postfix(p);
        }
        let start = self.pos;
        let ty = self.type_literal()?;
        if self.rest().starts_with("::") {
            self.pos += 2;
            let m_start = self.pos;
            while self.peek().is_some_and(is_name_char) {
                self.bump();
            }
            let member = self.src[m_start..self.pos].to_string();
            if member.is_empty() {
                return self.err(
                    self.pos,
                    "MissingPropertyName",
                    "Missing property name after '::'.",
                );
            }
            let span = Span {
                start,
                end: self.pos,
            };
            return self.postfix(Expr::Static(ty, member, span));
        }
        self.skip_ws();
        if self.at_statement_end() {
            // A bare type literal; the lab has no use for type objects.
            return self.err(
                start,
                "TypeLiteralNotSupported",
                format!("The lab does not support the bare type literal [{ty}]."),
            );
        }
        let operand = self.cast()?;
        Ok(Expr::Cast(
            ty,
            Box::new(operand),
            Span {
                start,
                end: self.pos,
            },
        ))
    }

    pub(super) fn postfix(&mut self, mut e: Expr) -> PResult<Expr> {
        loop {
            match self.peek() {
                Some('.') if self.peek2().is_some_and(|c| c.is_alphabetic() || c == '_') => {
                    let start = self.pos;
                    self.pos += 1;
                    let n_start = self.pos;
                    while self.peek().is_some_and(is_name_char) {
                        self.bump();
                    }
                    let name = self.src[n_start..self.pos].to_string();
                    if self.peek() == Some('(') {
                        self.pos += 1;
                        self.skip_ws_nl();
                        let args = if self.peek() == Some(')') {
                            Vec::new()
                        } else {
                            match self.expression()? {
                                Expr::List(items) => items,
                                one => vec![one],
                            }
                        };
                        self.skip_ws_nl();
                        self.expect(
                            ')',
                            "MissingEndParenthesisInMethodCall",
                            "Missing closing ')' in method call.",
                        )?;
                        e = Expr::Method(
                            Box::new(e),
                            name,
                            args,
                            Span {
                                start,
                                end: self.pos,
                            },
                        );
                    } else {
                        e = Expr::Member(Box::new(e), name);
                    }
                }
                Some('[') => {
                    self.pos += 1;
                    self.skip_ws_nl();
                    let index = self.expression()?;
                    self.skip_ws_nl();
                    self.expect(
                        ']',
                        "MissingEndSquareBracket",
                        "Array index expression is missing or not valid.",
                    )?;
                    e = Expr::Index(Box::new(e), Box::new(index));
                }
                _ => return Ok(e),
            }
        }
    }

    pub(super) fn variable(&mut self) -> PResult<String> {
        let start = self.pos;
        self.expect('$', "InvalidVariableReference", "Expected '$'.")?;
        if self.peek() == Some('{') {
            self.pos += 1;
            let n_start = self.pos;
            while self.peek().is_some_and(|c| c != '}') {
                self.bump();
            }
            let name = self.src[n_start..self.pos].to_string();
            self.expect(
                '}',
                "IncompleteDollarVariableReference",
                "Missing '}' in variable reference.",
            )?;
            return Ok(name);
        }
        let n_start = self.pos;
        while let Some(c) = self.peek() {
            if is_name_char(c) || (c == ':' && self.peek2().is_some_and(is_name_char)) {
                self.bump();
            } else {
                break;
            }
        }
        if n_start == self.pos {
            return self.err(
                start,
                "InvalidVariableReference",
                "Invalid variable reference. '$' was not followed by a valid variable name character. Consider using ${} to delimit the name.",
            );
        }
        Ok(self.src[n_start..self.pos].to_string())
    }

    pub(super) fn single_quoted(&mut self) -> PResult<String> {
        let start = self.pos;
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                None => {
                    return self.err(
                        start,
                        "TerminatorExpectedAtEndOfString",
                        "The string is missing the terminator: '.",
                    )
                }
                Some(q) if is_squote(q) && self.peek().is_some_and(is_squote) => {
                    let c = self.bump().unwrap_or(q);
                    s.push(c);
                }
                Some(q) if is_squote(q) => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    pub(super) fn double_quoted(&mut self) -> PResult<String> {
        let start = self.pos;
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.bump() {
                None => {
                    return self.err(
                        start,
                        "TerminatorExpectedAtEndOfString",
                        "The string is missing the terminator: \".",
                    )
                }
                Some('`') => match self.bump() {
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some('t') => s.push('\t'),
                    Some('0') => s.push('\0'),
                    Some(c) => s.push(c),
                    None => {}
                },
                Some('"') if self.peek() == Some('"') => {
                    self.pos += 1;
                    s.push('"');
                }
                Some('"') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    pub(super) fn primary(&mut self) -> PResult<Expr> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(c) if is_squote(c) => Ok(Expr::Str(self.single_quoted()?)),
            Some('"') => Ok(Expr::Str(self.double_quoted()?)),
            Some('$') => Ok(Expr::Var(self.variable()?)),
            Some(c) if c.is_ascii_digit() => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
                let digits = &self.src[start..self.pos];
                match digits.parse::<i64>() {
                    Ok(n) => Ok(Expr::Int(n)),
                    Err(_) => self.err(
                        start,
                        "BadNumericConstant",
                        format!("The numeric constant {digits} is not valid."),
                    ),
                }
            }
            Some('(') => {
                self.pos += 1;
                self.skip_ws_nl();
                if self.peek() == Some(')') {
                    return self.err(
                        self.pos,
                        "ExpectedExpression",
                        "An expression was expected after '('.",
                    );
                }
                let inner = self.pipeline()?;
                self.skip_ws_nl();
                self.expect(
                    ')',
                    "MissingEndParenthesisInExpression",
                    "Missing closing ')' in expression.",
                )?;
                Ok(Expr::Paren(Box::new(inner)))
            }
            Some('@') if self.peek2() == Some('(') => {
                self.pos += 2;
                let stmts = self.statements(Some(')'))?;
                self.expect(
                    ')',
                    "MissingEndParenthesisInSubexpression",
                    "Missing closing ')' in subexpression.",
                )?;
                Ok(Expr::SubArray(stmts))
            }
            Some('@') if self.peek2() == Some('{') => self.hash_literal(),
            _ => self.unexpected(),
        }
    }

    pub(super) fn hash_literal(&mut self) -> PResult<Expr> {
        self.pos += 2;
        let mut entries: Vec<(String, Pipeline)> = Vec::new();
        loop {
            loop {
                self.skip_ws_nl();
                if self.peek() == Some(';') {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            let key_pos = self.pos;
            let key = match self.peek() {
                Some('}') => {
                    self.pos += 1;
                    return Ok(Expr::Hash(entries));
                }
                None => {
                    return self.err(
                        self.pos,
                        "IncompleteHashLiteral",
                        "The hash literal was incomplete.",
                    )
                }
                Some(c) if is_squote(c) => self.single_quoted()?,
                Some('"') => self.double_quoted()?,
                Some(c) if is_name_char(c) => {
                    let s = self.pos;
                    while self.peek().is_some_and(|c| is_name_char(c) || c == '-') {
                        self.bump();
                    }
                    self.src[s..self.pos].to_string()
                }
                _ => {
                    return self.err(
                        self.pos,
                        "MissingEqualsInHashLiteral",
                        "Missing '=' operator after key in hash literal.",
                    )
                }
            };
            self.skip_ws();
            self.expect(
                '=',
                "MissingEqualsInHashLiteral",
                "Missing '=' operator after key in hash literal.",
            )?;
            self.skip_ws_nl();
            if self.at_statement_end() {
                return self.err(
                    self.pos,
                    "MissingStatementInHashLiteral",
                    "Missing statement after '=' in hash literal.",
                );
            }
            let value = self.pipeline()?;
            if entries.iter().any(|(k, _)| k.eq_ignore_ascii_case(&key)) {
                return self.err(
                    key_pos,
                    "DuplicateKeyInHashLiteral",
                    format!("Duplicate keys '{key}' are not allowed in hash literals."),
                );
            }
            entries.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some('\n' | '\r' | ';' | '}') => {}
                None => {
                    return self.err(
                        self.pos,
                        "IncompleteHashLiteral",
                        "The hash literal was incomplete.",
                    )
                }
                _ => {
                    return self.err(
                        self.pos,
                        "MissingEndCurlyBrace",
                        "Missing closing '}' in hash literal.",
                    )
                }
            }
        }
    }
}
