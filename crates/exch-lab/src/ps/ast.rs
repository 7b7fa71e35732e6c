//! Syntax tree of the PowerShell subset (see [`super`] for the grammar).

/// A byte range in the script, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    /// First byte.
    pub(crate) start: usize,
    /// One past the last byte.
    pub(crate) end: usize,
}

/// A statement.
#[derive(Debug, Clone)]
pub(crate) enum Stmt {
    /// `$var = <pipeline>` or `$var += <pipeline>`.
    Assign {
        var: String,
        append: bool,
        value: Pipeline,
    },
    /// `foreach ($var in <pipeline>) { … }`.
    Foreach {
        var: String,
        source: Pipeline,
        body: Vec<Stmt>,
    },
    /// `if (…) { … } elseif (…) { … } else { … }`.
    If {
        branches: Vec<(Pipeline, Vec<Stmt>)>,
        otherwise: Option<Vec<Stmt>>,
    },
    /// `try { … } catch { … } finally { … }`.
    Try {
        body: Vec<Stmt>,
        catch: Option<Vec<Stmt>>,
        finally: Option<Vec<Stmt>>,
    },
    /// A pipeline whose output is written to the enclosing output.
    Pipeline(Pipeline),
}

/// `<element> | <command> | …`.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    /// The first element: an expression or a command.
    pub(crate) first: Element,
    /// Following commands.
    pub(crate) rest: Vec<Command>,
}

/// First element of a pipeline.
#[derive(Debug, Clone)]
pub(crate) enum Element {
    /// An expression.
    Expr(Expr),
    /// A command invocation.
    Command(Command),
}

/// A command invocation.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    /// How the command is named.
    pub(crate) name: CommandName,
    /// Arguments as written (bound to parameters at run time).
    pub(crate) args: Vec<Arg>,
    /// Where the command is written.
    pub(crate) span: Span,
}

/// The name of a command.
#[derive(Debug, Clone)]
pub(crate) enum CommandName {
    /// A bareword (`Get-ChildItem`, `iisreset.exe`).
    Bare(String),
    /// `& <expr>`.
    Call(Box<Expr>),
}

/// A command argument.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// `-Name` or `-Name:value`.
    Param { name: String, inline: Option<Expr> },
    /// A positional value or a parameter's value.
    Value(Expr),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
}

/// An expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// A string literal (or a command-mode bareword).
    Str(String),
    /// An integer literal.
    Int(i64),
    /// `$name` (name as written, without `$`).
    Var(String),
    /// `a, b, c`.
    List(Vec<Expr>),
    /// `@( … )`.
    SubArray(Vec<Stmt>),
    /// `( <pipeline> )`.
    Paren(Box<Pipeline>),
    /// `@{ key = value; … }`.
    Hash(Vec<(String, Pipeline)>),
    /// `[type]<expr>`.
    Cast(String, Box<Expr>, Span),
    /// `[type]::Member`.
    Static(String, String, Span),
    /// `<expr>.Member`.
    Member(Box<Expr>, String),
    /// `<expr>.Method(args)`.
    Method(Box<Expr>, String, Vec<Expr>, Span),
    /// `<expr>[index]`.
    Index(Box<Expr>, Box<Expr>),
    /// `-not <expr>` / `!<expr>`.
    Not(Box<Expr>),
    /// `-<expr>`.
    Neg(Box<Expr>),
    /// `<expr> <op> <expr>`.
    Binary(BinOp, Box<Expr>, Box<Expr>, Span),
}
