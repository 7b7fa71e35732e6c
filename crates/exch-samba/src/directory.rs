//! The code under test's directory to the test DC (feature `directory`): one place for the
//! LDAPS set-up every Samba suite, bench and example uses.

use exch_directory::{LdapDirectory, LdapDirectoryBuilder};

use crate::AdEnv;

impl AdEnv {
    /// An [`LdapDirectory`] builder for this DC: LDAPS to [`AdEnv::url_ldaps`], trusting the
    /// lab CA ([`AdEnv::ca_file`]), bound as the administrator. Add what a test needs
    /// (`.timeout(..)`, `.connections(..)`, `.base_dn(..)`), then `.build().await`.
    ///
    /// ```no_run
    /// # async fn demo() {
    /// let Some(ad) = exch_samba::SambaAd::require("my suite") else { return };
    /// let dir = ad.env().directory().build().await.expect("LDAPS to the test DC");
    /// # drop(dir); }
    /// ```
    pub fn directory(&self) -> LdapDirectoryBuilder {
        self.directory_at(self.url_ldaps.clone())
    }

    /// [`Self::directory`] at `url` instead: another DC of the domain (a
    /// [`SambaPair`](crate::SambaPair) member), a proxy in front of this one, or `ldap://`
    /// with `.starttls(true)`.
    pub fn directory_at(&self, url: impl Into<String>) -> LdapDirectoryBuilder {
        LdapDirectory::builder()
            .url(url)
            .ca_file(self.ca_file.clone())
            .bind(self.admin_bind.clone(), self.admin_password.clone())
    }
}
