//! WinRM endpoint (work in progress).
