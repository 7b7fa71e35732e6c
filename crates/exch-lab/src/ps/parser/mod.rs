//! Recursive-descent parser for the PowerShell subset. It reads characters directly (PowerShell
//! tokenizes differently in command mode and expression mode, so the parser tells the scanner which
//! mode it is in by calling the matching helper).

mod expr;

use super::ast::{Arg, Command, CommandName, Element, Expr, Pipeline, Span, Stmt};

/// Deepest nesting of statements and expressions the parser accepts.
const MAX_DEPTH: usize = 64;

/// A syntax error, reported PowerShell-style by [`super::render_parse_error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// Byte offset of the error.
    pub(crate) pos: usize,
    /// Human-readable message (PowerShell's wording where known).
    pub(crate) message: String,
    /// PowerShell's `FullyQualifiedErrorId`.
    pub(crate) id: &'static str,
}

pub(super) type PResult<T> = Result<T, ParseError>;

/// Parses a whole script.
pub(crate) fn parse_script(src: &str) -> PResult<Vec<Stmt>> {
    let mut p = Parser {
        src,
        pos: 0,
        depth: 0,
    };
    let stmts = p.statements(None)?;
    Ok(stmts)
}

pub(super) struct Parser<'s> {
    pub(super) src: &'s str,
    pub(super) pos: usize,
    pub(super) depth: usize,
}

/// PowerShell accepts typographic single quotes as quotes too.
pub(super) fn is_squote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

pub(super) fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

pub(super) fn is_bareword_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '|' | ')' | '}' | ',' | '(' | '{')
}

impl<'s> Parser<'s> {
    pub(super) fn rest(&self) -> &'s str {
        self.src.get(self.pos..).unwrap_or("")
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(super) fn peek2(&self) -> Option<char> {
        let mut it = self.rest().chars();
        it.next();
        it.next()
    }

    pub(super) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    pub(super) fn err<T>(
        &self,
        pos: usize,
        id: &'static str,
        message: impl Into<String>,
    ) -> PResult<T> {
        Err(ParseError {
            pos,
            message: message.into(),
            id,
        })
    }

    pub(super) fn unexpected<T>(&self) -> PResult<T> {
        let tok: String = self
            .rest()
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(40)
            .collect();
        if tok.is_empty() {
            return self.err(
                self.pos,
                "IncompleteParseException",
                "Unexpected end of script.",
            );
        }
        self.err(
            self.pos,
            "UnexpectedToken",
            format!("Unexpected token '{tok}' in expression or statement."),
        )
    }

    pub(super) fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(
                self.pos,
                "ScriptTooDeeplyNested",
                "The script is nested too deeply for the lab's interpreter.",
            );
        }
        Ok(())
    }

    /// Skips blanks, comments and backtick line continuations; stops at a newline.
    pub(super) fn skip_ws(&mut self) {
        loop {
            let r = self.rest();
            if r.starts_with("<#") {
                match r.find("#>") {
                    Some(i) => self.pos += i + 2,
                    None => self.pos = self.src.len(),
                }
            } else if r.starts_with('#') {
                let n = r.find(['\n', '\r']).unwrap_or(r.len());
                self.pos += n;
            } else if r.starts_with("`\r\n") {
                self.pos += 3;
            } else if r.starts_with("`\n") {
                self.pos += 2;
            } else if let Some(c) = self
                .peek()
                .filter(|c| *c != '\n' && *c != '\r' && c.is_whitespace())
            {
                self.pos += c.len_utf8();
            } else {
                return;
            }
        }
    }

    /// Skips blanks, comments and newlines.
    pub(super) fn skip_ws_nl(&mut self) {
        loop {
            self.skip_ws();
            match self.peek() {
                Some('\n' | '\r') => self.pos += 1,
                _ => return,
            }
        }
    }

    pub(super) fn at_statement_end(&mut self) -> bool {
        self.skip_ws();
        matches!(self.peek(), None | Some('\n' | '\r' | ';' | '}' | ')'))
    }

    /// Reads a keyword-like word (letters only) without consuming it.
    pub(super) fn peek_word(&self) -> String {
        self.rest()
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect::<String>()
            .to_ascii_lowercase()
    }

    pub(super) fn keyword_here(&self, kw: &str) -> bool {
        let w = self.peek_word();
        if w != kw {
            return false;
        }
        let after = self.rest()[kw.len()..].chars().next();
        !after.is_some_and(|c| is_name_char(c) || c == '-' || c == '.' || c == ':')
    }

    pub(super) fn expect(&mut self, c: char, id: &'static str, message: &str) -> PResult<()> {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            Ok(())
        } else {
            self.err(self.pos, id, message)
        }
    }

    pub(super) fn statements(&mut self, end: Option<char>) -> PResult<Vec<Stmt>> {
        let mut out = Vec::new();
        loop {
            loop {
                self.skip_ws_nl();
                if self.peek() == Some(';') {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            match (self.peek(), end) {
                (None, None) => return Ok(out),
                (None, Some('}')) => {
                    return self.err(
                        self.pos,
                        "MissingEndCurlyBrace",
                        "Missing closing '}' in statement block or type definition.",
                    )
                }
                (None, Some(_)) => {
                    return self.err(
                        self.pos,
                        "MissingEndParenthesisInExpression",
                        "Missing closing ')' in expression.",
                    )
                }
                (Some(c), Some(e)) if c == e => return Ok(out),
                (Some('}' | ')'), _) => return self.unexpected(),
                _ => {}
            }
            out.push(self.statement()?);
            self.skip_ws();
            match self.peek() {
                None | Some('\n' | '\r' | ';') => {}
                Some(c) if Some(c) == end => {}
                _ => return self.unexpected(),
            }
        }
    }

    pub(super) fn block(&mut self, id: &'static str, message: &str) -> PResult<Vec<Stmt>> {
        self.skip_ws_nl();
        self.expect('{', id, message)?;
        let body = self.statements(Some('}'))?;
        self.expect(
            '}',
            "MissingEndCurlyBrace",
            "Missing closing '}' in statement block or type definition.",
        )?;
        Ok(body)
    }

    pub(super) fn statement(&mut self) -> PResult<Stmt> {
        self.enter()?;
        let r = self.statement_inner();
        self.depth -= 1;
        r
    }

    pub(super) fn statement_inner(&mut self) -> PResult<Stmt> {
        if self.peek() == Some('$') {
            let save = self.pos;
            let var = self.variable()?;
            self.skip_ws();
            let append = if self.rest().starts_with("+=") {
                self.pos += 2;
                Some(true)
            } else if self.peek() == Some('=') {
                self.pos += 1;
                Some(false)
            } else {
                None
            };
            match append {
                Some(append) => {
                    self.skip_ws_nl();
                    if self.at_statement_end() {
                        return self.err(
                            self.pos,
                            "ExpectedValueExpression",
                            "You must provide a value expression following the '=' operator.",
                        );
                    }
                    let value = self.pipeline()?;
                    return Ok(Stmt::Assign { var, append, value });
                }
                None => self.pos = save,
            }
        }
        if self.keyword_here("foreach") {
            return self.foreach_statement();
        }
        if self.keyword_here("if") {
            return self.if_statement();
        }
        if self.keyword_here("try") {
            return self.try_statement();
        }
        for kw in ["else", "elseif", "catch", "finally", "in"] {
            if self.keyword_here(kw) {
                return self.unexpected();
            }
        }
        Ok(Stmt::Pipeline(self.pipeline()?))
    }

    pub(super) fn foreach_statement(&mut self) -> PResult<Stmt> {
        self.pos += "foreach".len();
        self.skip_ws();
        self.expect(
            '(',
            "MissingOpenParenthesisAfterKeyword",
            "Missing opening '(' after keyword 'foreach'.",
        )?;
        self.skip_ws_nl();
        if self.peek() != Some('$') {
            return self.err(
                self.pos,
                "MissingVariableNameAfterForeach",
                "Missing variable name after foreach.",
            );
        }
        let var = self.variable()?;
        self.skip_ws_nl();
        if !self.keyword_here("in") {
            return self.err(
                self.pos,
                "MissingInInForeach",
                "Missing 'in' after variable in foreach loop.",
            );
        }
        self.pos += 2;
        self.skip_ws_nl();
        if self.at_statement_end() {
            return self.err(
                self.pos,
                "MissingForeachExpression",
                "Missing foreach loop collection expression.",
            );
        }
        let source = self.pipeline()?;
        self.skip_ws_nl();
        self.expect(
            ')',
            "MissingEndParenthesisAfterForeach",
            "Missing closing ')' after expression in 'foreach' statement.",
        )?;
        let body = self.block(
            "MissingForeachStatement",
            "Missing statement body in foreach loop.",
        )?;
        Ok(Stmt::Foreach { var, source, body })
    }

    pub(super) fn condition(&mut self, kw: &str) -> PResult<Pipeline> {
        self.skip_ws();
        self.expect(
            '(',
            "MissingOpenParenthesisInIfStatement",
            &format!("Missing '(' after '{kw}' in if statement."),
        )?;
        self.skip_ws_nl();
        if self.at_statement_end() {
            return self.err(
                self.pos,
                "IfStatementMissingCondition",
                format!("Missing condition in if statement after '{kw} ('."),
            );
        }
        let cond = self.pipeline()?;
        self.skip_ws_nl();
        self.expect(
            ')',
            "MissingEndParenthesisAfterStatement",
            &format!("Missing closing ')' after expression in '{kw}' statement."),
        )?;
        Ok(cond)
    }

    pub(super) fn if_statement(&mut self) -> PResult<Stmt> {
        self.pos += 2;
        let mut branches = Vec::new();
        let cond = self.condition("if")?;
        let body = self.block(
            "MissingStatementBlock",
            "Missing statement block after if ( condition ).",
        )?;
        branches.push((cond, body));
        let mut otherwise = None;
        loop {
            let save = self.pos;
            self.skip_ws_nl();
            if self.keyword_here("elseif") {
                self.pos += "elseif".len();
                let cond = self.condition("elseif")?;
                let body = self.block(
                    "MissingStatementBlockAfterElseIf",
                    "Missing statement block after elseif ( condition ).",
                )?;
                branches.push((cond, body));
            } else if self.keyword_here("else") {
                self.pos += "else".len();
                otherwise = Some(self.block(
                    "MissingStatementBlockAfterElse",
                    "Missing statement block after 'else' keyword.",
                )?);
                break;
            } else {
                self.pos = save;
                break;
            }
        }
        Ok(Stmt::If {
            branches,
            otherwise,
        })
    }

    pub(super) fn try_statement(&mut self) -> PResult<Stmt> {
        self.pos += 3;
        let body = self.block(
            "MissingTryStatementBlock",
            "Missing statement block after 'try'.",
        )?;
        let mut catch = None;
        let mut finally = None;
        let save = self.pos;
        self.skip_ws_nl();
        if self.keyword_here("catch") {
            self.pos += "catch".len();
            // Optional exception type list: catch [A], [B] { … }
            loop {
                self.skip_ws();
                if self.peek() != Some('[') {
                    break;
                }
                self.type_literal()?;
                self.skip_ws();
                if self.peek() == Some(',') {
                    self.pos += 1;
                    self.skip_ws_nl();
                } else {
                    break;
                }
            }
            catch = Some(self.block(
                "MissingCatchHandlerBlock",
                "Missing statement block in catch block.",
            )?);
        } else {
            self.pos = save;
        }
        let save = self.pos;
        self.skip_ws_nl();
        if self.keyword_here("finally") {
            self.pos += "finally".len();
            finally = Some(self.block(
                "MissingFinallyStatementBlock",
                "Missing statement block after 'finally'.",
            )?);
        } else {
            self.pos = save;
        }
        if catch.is_none() && finally.is_none() {
            return self.err(
                self.pos,
                "MissingCatchOrFinally",
                "The Try statement is missing its Catch or Finally block.",
            );
        }
        Ok(Stmt::Try {
            body,
            catch,
            finally,
        })
    }

    pub(super) fn pipeline(&mut self) -> PResult<Pipeline> {
        self.skip_ws();
        if self.at_statement_end() {
            return self.unexpected();
        }
        let first = self.element()?;
        let mut rest = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some('|') && self.peek2() != Some('|') {
                self.pos += 1;
                self.skip_ws_nl();
                if self.at_statement_end() {
                    return self.err(
                        self.pos,
                        "EmptyPipeElement",
                        "An empty pipe element is not allowed.",
                    );
                }
                match self.element()? {
                    Element::Command(c) => rest.push(c),
                    Element::Expr(_) => {
                        return self.err(
                            self.pos,
                            "ExpressionsMustBeFirstInPipeline",
                            "Expressions are only allowed as the first element of a pipeline.",
                        )
                    }
                }
            } else {
                break;
            }
        }
        Ok(Pipeline { first, rest })
    }

    pub(super) fn element(&mut self) -> PResult<Element> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some('&') => {
                self.pos += 1;
                self.skip_ws();
                let target = self.arg_value()?;
                let args = self.command_args()?;
                Ok(Element::Command(Command {
                    name: CommandName::Call(Box::new(target)),
                    args,
                    span: Span {
                        start,
                        end: self.pos,
                    },
                }))
            }
            Some(c) if c.is_alphabetic() || matches!(c, '_' | '.' | '\\' | '/') => {
                let name = self.bareword();
                let args = self.command_args()?;
                Ok(Element::Command(Command {
                    name: CommandName::Bare(name),
                    args,
                    span: Span {
                        start,
                        end: self.pos,
                    },
                }))
            }
            _ => Ok(Element::Expr(self.expression()?)),
        }
    }

    pub(super) fn bareword(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_bareword_delim(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.src[start..self.pos].to_string()
    }

    pub(super) fn command_args(&mut self) -> PResult<Vec<Arg>> {
        let mut args = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None | Some('\n' | '\r' | ';' | '|' | ')' | '}') => return Ok(args),
                Some('-') if self.peek2().is_some_and(|c| c.is_alphabetic() || c == '_') => {
                    self.pos += 1;
                    let name_start = self.pos;
                    while self.peek().is_some_and(|c| is_name_char(c) || c == '-') {
                        self.bump();
                    }
                    let name = self.src[name_start..self.pos].to_string();
                    let inline = if self.peek() == Some(':') {
                        self.pos += 1;
                        Some(self.arg_list()?)
                    } else {
                        None
                    };
                    args.push(Arg::Param { name, inline });
                }
                Some(_) => args.push(Arg::Value(self.arg_list()?)),
            }
            if args.len() > 10_000 {
                return self.err(self.pos, "TooManyArguments", "Too many arguments.");
            }
        }
    }

    /// An argument value, or a comma list of them.
    pub(super) fn arg_list(&mut self) -> PResult<Expr> {
        let first = self.arg_value()?;
        let mut items = vec![first];
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.peek() == Some(',') {
                self.pos += 1;
                self.skip_ws_nl();
                items.push(self.arg_value()?);
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

    /// A single command-mode argument value.
    pub(super) fn arg_value(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.arg_value_inner();
        self.depth -= 1;
        r
    }

    pub(super) fn arg_value_inner(&mut self) -> PResult<Expr> {
        match self.peek() {
            Some(c) if is_squote(c) || matches!(c, '"' | '$' | '(') => {
                let p = self.primary()?;
                self.postfix(p)
            }
            Some('@') if matches!(self.peek2(), Some('(' | '{')) => {
                let p = self.primary()?;
                self.postfix(p)
            }
            Some(c)
                if c.is_ascii_digit()
                    || (c == '-' && self.peek2().is_some_and(|d| d.is_ascii_digit())) =>
            {
                let save = self.pos;
                let word = self.bareword();
                match word.parse::<i64>() {
                    Ok(n) => Ok(Expr::Int(n)),
                    Err(_) => {
                        self.pos = save;
                        Ok(Expr::Str(self.bareword()))
                    }
                }
            }
            Some(c) if !is_bareword_delim(c) => Ok(Expr::Str(self.bareword())),
            _ => self.unexpected(),
        }
    }
}
