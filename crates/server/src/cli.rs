//! The command line: `idbridge serve` and the admin commands, all on the same config.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "idbridge",
    version,
    about = "Identity bridge between business customers' directories and a telecom self-care portal"
)]
pub struct Cli {
    /// Configuration file (TOML); every key can also be set as IDBRIDGE_SECTION__KEY.
    #[arg(long, short, global = true, env = "IDBRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: SCIM, admin API, health and metrics.
    Serve,
    /// Generate operator tokens for the admin API.
    #[command(subcommand)]
    AdminToken(AdminTokenCommand),
    #[command(flatten)]
    Admin(AdminCommand),
}

/// The commands that open the configured database, do one thing and exit.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Validate the configuration and the database connection, then exit.
    CheckConfig,
    /// Import tenants, roles, access profiles and catalog entries from a TOML file.
    Apply {
        file: PathBuf,
        /// Print what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Manage tenants (business customers).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage a tenant's SCIM bearer tokens.
    #[command(subcommand)]
    ScimToken(ScimTokenCommand),
    /// A tenant's individuals (portal users): list, show, explain, change by hand.
    #[command(subcommand)]
    Individual(IndividualCommand),
    /// Change sets held by the mass-deprovision guard: list, show, approve, reject.
    #[command(subcommand)]
    Changes(ChangesCommand),
    /// Directory sync: run a tenant's LDAP sources, show recent runs.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Portal connectors: what each carried into the portal, its problems, a resync.
    #[command(subcommand)]
    Connector(ConnectorCommand),
    /// Read the audit log of a tenant, or operator-wide with --operator.
    Audit(AuditArgs),
    /// Mapping pipeline tools: preview a person's decision, show a tenant's rules.
    #[command(subcommand)]
    Mapping(MappingCommand),
    /// Loaded mapping plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Portals registered with idbridge's OpenID provider.
    #[command(subcommand)]
    Client(ClientCommand),
    /// A tenant's sign-in: verified email domains and upstream IdP connections.
    #[command(subcommand)]
    SignIn(SignInCommand),
    /// idbridge's token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show the catalog of portal sections, access-profile flags and group-scoped rights.
    Catalog {
        #[arg(long)]
        json: bool,
    },
    /// List the operator's roles.
    Roles {
        #[arg(long)]
        json: bool,
    },
    /// List the operator's access profiles.
    AccessProfiles {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        slug: String,
        #[arg(long)]
        name: String,
        /// IANA time zone for individuals that carry none.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a tenant with its allowed roles and access profiles.
    Show {
        slug: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable a tenant: its SCIM tokens stop working and nobody of it may log in.
    Disable { slug: String },
    /// Enable a disabled tenant.
    Enable { slug: String },
}

#[derive(Debug, Subcommand)]
pub enum ScimTokenCommand {
    /// Create a token and print it once; only its hash is stored.
    Create {
        slug: String,
        #[arg(long, default_value = "scim")]
        name: String,
    },
    /// List a tenant's tokens (never the secrets).
    List {
        slug: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id.
    Revoke { slug: String, id: String },
}

#[derive(Debug, Subcommand)]
pub enum AdminTokenCommand {
    /// Print a new operator token and the hash to list under admin.token_hashes.
    Create,
}

#[derive(Debug, Subcommand)]
pub enum IndividualCommand {
    /// Create an individual by hand (no directory behind it). In a tenant that allows
    /// local sign-in, one with an email gets an invitation to set a password.
    Create {
        slug: String,
        #[arg(long)]
        login: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        role: String,
        #[arg(long)]
        access_profile: Option<String>,
        #[arg(long)]
        given_name: Option<String>,
        #[arg(long)]
        family_name: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// IANA time zone (default: the tenant's).
        #[arg(long)]
        time_zone: Option<String>,
        /// Language tag the individual's mails are written in (de, en-GB; default: the
        /// tenant's).
        #[arg(long)]
        language: Option<String>,
        /// Local date-time in the individual's zone (2027-04-20T08:00).
        #[arg(long)]
        activation: Option<String>,
        #[arg(long)]
        expiration: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Send an invitation again (a new single-use link; the one out stops working), or a
    /// password-reset link to someone who already has a password.
    Invite { slug: String, id_or_login: String },
    /// Revoke the invitation or reset link still out.
    RevokeInvitation { slug: String, id_or_login: String },
    /// The mails sent to a tenant's individuals (one individual's with ID_OR_LOGIN), newest
    /// first: kind, recipient, state, attempts, last error — never a body.
    Mails {
        slug: String,
        id_or_login: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's individuals.
    List {
        slug: String,
        #[arg(long)]
        status: Option<String>,
        /// Only the members of this portal group.
        #[arg(long)]
        group: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one individual by id or login.
    Show {
        slug: String,
        id_or_login: String,
        #[arg(long)]
        json: bool,
    },
    /// Why the individual has its role, access profile, scopes and status: sources,
    /// groups, rules or plugins, dates.
    Explain {
        slug: String,
        id_or_login: String,
        #[arg(long)]
        json: bool,
    },
    /// Change an individual by hand: dates, time zone, scopes. Hand-set dates hold until a
    /// source or mapping sets one; hand-set scopes survive every re-map.
    Set {
        slug: String,
        id_or_login: String,
        /// Local date-time in the individual's zone (2026-12-01T09:00); `none` clears.
        #[arg(long)]
        activation: Option<String>,
        /// Local date-time in the individual's zone; `none` clears.
        #[arg(long)]
        expiration: Option<String>,
        /// IANA time zone; dates keep their local times.
        #[arg(long)]
        time_zone: Option<String>,
        /// Language tag (de, en-GB); `none` clears it (the tenant's language again).
        #[arg(long)]
        language: Option<String>,
        /// KIND=VALUE with KIND one of extensions, queues, phone_numbers, billing_accounts,
        /// groups (membership of a portal group), or a group right with a group or `all`
        /// (`co_monitoring=sales`, `statistics=all`) (repeatable).
        #[arg(long)]
        add_scope: Vec<String>,
        /// As --add-scope; a right reaching every group is taken back with `RIGHT=all`.
        #[arg(long)]
        remove_scope: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Read the tenant's LDAP sources now and apply what changed (guarded).
    Ldap {
        slug: String,
        /// Only this source (default: every source of the tenant).
        #[arg(long)]
        source: Option<String>,
        /// Print the plan — creates, updates, suspensions, deprovisions — and apply nothing.
        #[arg(long)]
        dry_run: bool,
        /// Read every user (finds deletions), even when an incremental run would do.
        #[arg(long)]
        full: bool,
        #[arg(long)]
        json: bool,
    },
    /// Recent sync runs with their counts, durations and errors.
    Status {
        slug: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// The tenant's connectors with their link counts and health.
    List {
        slug: String,
        #[arg(long)]
        json: bool,
    },
    /// One connector (or all of the tenant's): counts, health, and the links that need an
    /// operator — conflicts, dead links, retries — with their errors.
    Status {
        slug: String,
        name: Option<String>,
        /// How many problem links to show per connector.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Push every individual again, reading each remote object back first (repairs drift,
    /// re-creates what was deleted in the portal, retries conflicts and dead links).
    Resync { slug: String, name: String },
}

#[derive(Debug, Subcommand)]
pub enum ChangesCommand {
    /// Change sets the mass-deprovision guard held (newest first).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// pending, approved or rejected.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A held change set and its writes (read a page at a time, so any size shows at once).
    Show {
        id: String,
        /// Show at most this many writes (default: all of them).
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Apply a held change set (writes whose individual changed since are skipped).
    Approve { id: String },
    /// Discard a held change set; nothing in it is applied.
    Reject { id: String },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The tenant; omit with --operator for operator-wide entries (roles, profiles, catalog).
    pub slug: Option<String>,
    #[arg(long, conflicts_with = "slug")]
    pub operator: bool,
    /// Entries at or after this instant (RFC 3339, e.g. 2026-11-24T00:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Entries before this instant.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this actor id.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this subject id (a slug, login, token id …).
    #[arg(long)]
    pub subject: Option<String>,
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// JSON lines, one entry per line (for export).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// What this person would get in TENANT, and why (nothing is written).
    Preview {
        slug: String,
        /// JSON file: {"user": {"login": …, "department": …, "custom": {…}}, "groups": [{"source": "scim", "id": …, "display_name": …}]}
        #[arg(long)]
        user: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Replace the tenant's mapping rules with those of a file: a JSON list of rules, or
    /// TOML with `[[rules]]` tables (the same fields as `[[tenants.rules]]` in apply files).
    SetRules {
        slug: String,
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
    /// Dry run: what would change for every existing individual if these rules replaced
    /// the stored ones (same file forms as set-rules). Nothing is written.
    Diff {
        slug: String,
        #[arg(long)]
        rules: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Re-decide every individual of the tenant from its sources now (what a rule change
    /// does by itself); a mass deprovision is held for approval.
    Remap { slug: String },
    /// The tenant's mapping rules, in the order they are tried.
    Rules {
        slug: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load the configured plugins and show their ABI, versions and health.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a portal (or update one); a new portal's secret is printed once.
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Exact redirect URI (repeatable).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Where RP-initiated logout may return to (repeatable).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// OpenID Connect Back-Channel Logout receiver.
        #[arg(long)]
        backchannel_logout_uri: Option<String>,
        /// RS256 (default) or ES256.
        #[arg(long, default_value = "RS256")]
        alg: String,
        /// Only these tenants' individuals may sign in (repeatable; default: all).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Compact permission claims: only sections that are not restrict, only flags
        /// that are on (keeps ID tokens small).
        #[arg(long)]
        compact_claims: bool,
        /// Read the secret from this environment variable instead of generating one.
        #[arg(long)]
        secret_env: Option<String>,
    },
    /// List registered portals (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a portal; its tokens stop working.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SignInCommand {
    /// Replace a tenant's domains and IdP connections with those of a TOML file
    /// (`domains = [...]` and `[[oidc]]` tables, as under `[[tenants]]` in apply files).
    Set { slug: String, file: PathBuf },
    /// Show a tenant's domains and IdP connections.
    Show {
        slug: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Signing keys with their state (signing, published ahead, retired, removed).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Publish successors now; they sign after [sso] publish_ahead_hours (or at once with --now).
    Rotate {
        #[arg(long)]
        now: bool,
    },
}
