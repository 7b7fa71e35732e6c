//! Recursive-descent parser for the PowerShell subset. It reads characters directly (PowerShell
//! tokenizes differently in command mode and expression mode, so the parser tells the scanner which
//! mode it is in by calling the matching helper).

use super::ast::{Arg, BinOp, Command, CommandName, Element, Expr, Pipeline, Span, Stmt};

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

type PResult<T> = Result<T, ParseError>;

/// Parses a whole script.
pub(crate) fn parse_script(src: &str) -> PResult<Vec<Stmt>> {
    let mut p = Parser { src, pos: 0, depth: 0 };
    let stmts = p.statements(None)?;
    Ok(stmts)
}

struct Parser<'s> {
    src: &'s str,
    pos: usize,
    depth: usize,
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_bareword_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '|' | ')' | '}' | ',' | '(' | '{')
}

impl<'s> Parser<'s> {
    fn rest(&self) -> &'s str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.rest().chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn err<T>(&self, pos: usize, id: &'static str, message: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            pos,
            message: message.into(),
            id,
        })
    }

    fn unexpected<T>(&self) -> PResult<T> {
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

    fn enter(&mut self) -> PResult<()> {
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
    fn skip_ws(&mut self) {
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
            } else if let Some(c) = self.peek().filter(|c| *c != '\n' && *c != '\r' && c.is_whitespace()) {
                self.pos += c.len_utf8();
            } else {
                return;
            }
        }
    }

    /// Skips blanks, comments and newlines.
    fn skip_ws_nl(&mut self) {
        loop {
            self.skip_ws();
            match self.peek() {
                Some('\n' | '\r') => self.pos += 1,
                _ => return,
            }
        }
    }

    fn at_statement_end(&mut self) -> bool {
        self.skip_ws();
        matches!(self.peek(), None | Some('\n' | '\r' | ';' | '}' | ')'))
    }

    /// Reads a keyword-like word (letters only) without consuming it.
    fn peek_word(&self) -> String {
        self.rest()
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect::<String>()
            .to_ascii_lowercase()
    }

    fn keyword_here(&self, kw: &str) -> bool {
        let w = self.peek_word();
        if w != kw {
            return false;
        }
        let after = self.rest()[kw.len()..].chars().next();
        !after.is_some_and(|c| is_name_char(c) || c == '-' || c == '.' || c == ':')
    }

    fn expect(&mut self, c: char, id: &'static str, message: &str) -> PResult<()> {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            Ok(())
        } else {
            self.err(self.pos, id, message)
        }
    }

    fn statements(&mut self, end: Option<char>) -> PResult<Vec<Stmt>> {
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

    fn block(&mut self, id: &'static str, message: &str) -> PResult<Vec<Stmt>> {
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

    fn statement(&mut self) -> PResult<Stmt> {
        self.enter()?;
        let r = self.statement_inner();
        self.depth -= 1;
        r
    }

    fn statement_inner(&mut self) -> PResult<Stmt> {
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

    fn foreach_statement(&mut self) -> PResult<Stmt> {
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

    fn condition(&mut self, kw: &str) -> PResult<Pipeline> {
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

    fn if_statement(&mut self) -> PResult<Stmt> {
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

    fn try_statement(&mut self) -> PResult<Stmt> {
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

    fn pipeline(&mut self) -> PResult<Pipeline> {
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

    fn element(&mut self) -> PResult<Element> {
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

    fn bareword(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if is_bareword_delim(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.src[start..self.pos].to_string()
    }

    fn command_args(&mut self) -> PResult<Vec<Arg>> {
        let mut args = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None | Some('\n' | '\r' | ';' | '|' | ')' | '}') => return Ok(args),
                Some('-') if self.peek2().is_some_and(|c| c.is_alphabetic() || c == '_') => {
                    let start = self.pos;
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
                    args.push(Arg::Param {
                        name,
                        inline,
                        span: Span {
                            start,
                            end: self.pos,
                        },
                    });
                }
                Some(_) => args.push(Arg::Value(self.arg_list()?)),
            }
            if args.len() > 10_000 {
                return self.err(self.pos, "TooManyArguments", "Too many arguments.");
            }
        }
    }

    /// An argument value, or a comma list of them.
    fn arg_list(&mut self) -> PResult<Expr> {
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
    fn arg_value(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.arg_value_inner();
        self.depth -= 1;
        r
    }

    fn arg_value_inner(&mut self) -> PResult<Expr> {
        match self.peek() {
            Some('\'' | '"' | '$' | '(') => {
                let p = self.primary()?;
                self.postfix(p)
            }
            Some('@') if matches!(self.peek2(), Some('(' | '{')) => {
                let p = self.primary()?;
                self.postfix(p)
            }
            Some(c) if c.is_ascii_digit() || (c == '-' && self.peek2().is_some_and(|d| d.is_ascii_digit())) => {
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

    fn expression(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.logical();
        self.depth -= 1;
        r
    }

    /// Peeks a `-word` operator after blanks; returns it lowercased with its length.
    fn peek_word_operator(&mut self) -> Option<(String, usize)> {
        let r = self.rest();
        let body = r.strip_prefix('-')?;
        let word: String = body.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        if word.is_empty() {
            return None;
        }
        Some((word.to_ascii_lowercase(), word.len() + 1))
    }

    fn logical(&mut self) -> PResult<Expr> {
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
            left = Expr::Binary(op, Box::new(left), Box::new(right), Span { start, end: self.pos });
        }
    }

    fn comparison(&mut self) -> PResult<Expr> {
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
            left = Expr::Binary(op, Box::new(left), Box::new(right), Span { start, end: self.pos });
        }
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut left = self.unary()?;
        loop {
            let save = self.pos;
            self.skip_ws();
            let start = self.pos;
            let op = match self.peek() {
                Some('+') if self.peek2() != Some('=') => BinOp::Add,
                Some('-') if !self.peek2().is_some_and(|c| c.is_ascii_alphabetic() || c == '=') => {
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
            left = Expr::Binary(op, Box::new(left), Box::new(right), Span { start, end: self.pos });
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> PResult<Expr> {
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

    fn comma(&mut self) -> PResult<Expr> {
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

    fn type_literal(&mut self) -> PResult<String> {
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

    fn cast(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.cast_inner();
        self.depth -= 1;
        r
    }

    fn cast_inner(&mut self) -> PResult<Expr> {
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
                return self.err(self.pos, "MissingPropertyName", "Missing property name after '::'.");
            }
            let span = Span { start, end: self.pos };
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
        Ok(Expr::Cast(ty, Box::new(operand), Span { start, end: self.pos }))
    }

    fn postfix(&mut self, mut e: Expr) -> PResult<Expr> {
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
                        e = Expr::Method(Box::new(e), name, args, Span { start, end: self.pos });
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

    fn variable(&mut self) -> PResult<String> {
        let start = self.pos;
        self.expect('$', "InvalidVariableReference", "Expected '$'.")?;
        if self.peek() == Some('{') {
            self.pos += 1;
            let n_start = self.pos;
            while self.peek().is_some_and(|c| c != '}') {
                self.bump();
            }
            let name = self.src[n_start..self.pos].to_string();
            self.expect('}', "IncompleteDollarVariableReference", "Missing '}' in variable reference.")?;
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

    fn single_quoted(&mut self) -> PResult<String> {
        let start = self.pos;
        self.pos += 1;
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
                Some('\'') if self.peek() == Some('\'') => {
                    self.pos += 1;
                    s.push('\'');
                }
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> PResult<String> {
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

    fn primary(&mut self) -> PResult<Expr> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some('\'') => Ok(Expr::Str(self.single_quoted()?)),
            Some('"') => Ok(Expr::Str(self.double_quoted()?)),
            Some('$') => Ok(Expr::Var(self.variable()?)),
            Some(c) if c.is_ascii_digit() => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
                let digits = &self.src[start..self.pos];
                match digits.parse::<i64>() {
                    Ok(n) => Ok(Expr::Int(n)),
                    Err(_) => self.err(start, "BadNumericConstant", format!("The numeric constant {digits} is not valid.")),
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

    fn hash_literal(&mut self) -> PResult<Expr> {
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
                Some('\'') => self.single_quoted()?,
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
