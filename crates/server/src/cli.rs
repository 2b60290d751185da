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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: SCIM, admin API, health and metrics.
    Serve,
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
    /// Generate operator tokens for the admin API.
    #[command(subcommand)]
    AdminToken(AdminTokenCommand),
    /// Read a tenant's individuals (portal users).
    #[command(subcommand)]
    Individual(IndividualCommand),
    /// Read the audit log of a tenant, or operator-wide with --operator.
    Audit(AuditArgs),
    /// Mapping pipeline tools: preview a person's decision, show a tenant's rules.
    #[command(subcommand)]
    Mapping(MappingCommand),
    /// Loaded mapping plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Show the catalog of portal sections and access-profile flags.
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
    /// List a tenant's individuals.
    List {
        slug: String,
        #[arg(long)]
        status: Option<String>,
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
