//! SCIM schemas as data (RFC 7643): the attribute definitions drive normalisation of
//! what clients send, case-insensitive attribute lookup, filter comparison (`caseExact`),
//! PATCH paths, projection (`returned`) and the `/Schemas` discovery document.

use serde_json::{Value, json};

pub use idbridge_core::source_record::{ENTERPRISE_USER, PORTAL_USER};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Complex,
}

impl AttrType {
    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Boolean => "boolean",
            Self::Decimal => "decimal",
            Self::Integer => "integer",
            Self::DateTime => "dateTime",
            Self::Reference => "reference",
            Self::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// One attribute definition.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: &'static str,
    pub kind: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub unique_server: bool,
    pub canonical_values: &'static [&'static str],
    /// For references: what they point at (`User`, `Group`, `external`, `uri`).
    pub reference_types: &'static [&'static str],
    pub sub_attributes: Vec<Attribute>,
    pub description: &'static str,
}

impl Attribute {
    const fn base(name: &'static str, kind: AttrType) -> Self {
        Self {
            name,
            kind,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            unique_server: false,
            canonical_values: &[],
            reference_types: &["external"],
            sub_attributes: Vec::new(),
            description: "",
        }
    }

    fn string(name: &'static str) -> Self {
        Self::base(name, AttrType::String)
    }

    fn boolean(name: &'static str) -> Self {
        Self::base(name, AttrType::Boolean)
    }

    fn complex(name: &'static str, subs: Vec<Attribute>) -> Self {
        Self { sub_attributes: subs, ..Self::base(name, AttrType::Complex) }
    }

    fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }

    fn required(mut self) -> Self {
        self.required = true;
        self
    }

    fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    fn read_only(mut self) -> Self {
        self.mutability = Mutability::ReadOnly;
        self
    }

    fn immutable(mut self) -> Self {
        self.mutability = Mutability::Immutable;
        self
    }

    fn write_only(mut self) -> Self {
        self.mutability = Mutability::WriteOnly;
        self.returned = Returned::Never;
        self
    }

    fn always(mut self) -> Self {
        self.returned = Returned::Always;
        self
    }

    fn unique(mut self) -> Self {
        self.unique_server = true;
        self
    }

    fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }

    fn refs(mut self, types: &'static [&'static str]) -> Self {
        self.reference_types = types;
        self
    }

    fn described(mut self, text: &'static str) -> Self {
        self.description = text;
        self
    }

    /// A sub-attribute by name, ignoring case.
    pub fn sub(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.kind.as_str(),
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
            "uniqueness": if self.unique_server { "server" } else { "none" },
        });
        if !self.canonical_values.is_empty() {
            v["canonicalValues"] = json!(self.canonical_values);
        }
        if self.kind == AttrType::Reference {
            v["referenceTypes"] = json!(self.reference_types);
        }
        if !self.sub_attributes.is_empty() {
            v["subAttributes"] = Value::Array(self.sub_attributes.iter().map(Attribute::to_json).collect());
        }
        v
    }
}

/// A schema (core or extension).
#[derive(Debug, Clone)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: Vec<Attribute>,
}

impl Schema {
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn to_json(&self, base_url: &str) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(Attribute::to_json).collect::<Vec<_>>(),
            "meta": { "resourceType": "Schema", "location": format!("{base_url}/Schemas/{}", self.id) },
        })
    }
}

/// Which kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Self::User => "Users",
            Self::Group => "Groups",
        }
    }

    pub fn core_schema(self) -> &'static str {
        match self {
            Self::User => USER,
            Self::Group => GROUP,
        }
    }

    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Self::User => &[ENTERPRISE_USER, PORTAL_USER],
            Self::Group => &[],
        }
    }
}

/// Attributes every resource has (RFC 7643 §3.1).
pub fn common_attributes() -> Vec<Attribute> {
    vec![
        Attribute::string("id").case_exact().read_only().always().described("Unique identifier assigned by idbridge."),
        Attribute::string("externalId").case_exact().described("Identifier assigned by the provisioning client."),
        Attribute::complex(
            "meta",
            vec![
                Attribute::string("resourceType").case_exact().read_only(),
                Attribute::base("created", AttrType::DateTime).read_only(),
                Attribute::base("lastModified", AttrType::DateTime).read_only(),
                Attribute::base("location", AttrType::Reference).case_exact().read_only().refs(&["uri"]),
                Attribute::string("version").case_exact().read_only(),
            ],
        )
        .read_only(),
    ]
}

fn multi_valued_typed(name: &'static str, types: &'static [&'static str], value_kind: AttrType) -> Attribute {
    Attribute::complex(
        name,
        vec![
            Attribute::base("value", value_kind),
            Attribute::string("display"),
            Attribute::string("type").canonical(types),
            Attribute::boolean("primary"),
        ],
    )
    .multi()
}

pub fn user_schema() -> Schema {
    Schema {
        id: USER,
        name: "User",
        description: "User Account",
        attributes: vec![
            Attribute::string("userName")
                .required()
                .unique()
                .described("Unique login; compared without regard to case."),
            Attribute::complex(
                "name",
                vec![
                    Attribute::string("formatted"),
                    Attribute::string("familyName"),
                    Attribute::string("givenName"),
                    Attribute::string("middleName"),
                    Attribute::string("honorificPrefix"),
                    Attribute::string("honorificSuffix"),
                ],
            ),
            Attribute::string("displayName"),
            Attribute::string("nickName"),
            Attribute::base("profileUrl", AttrType::Reference),
            Attribute::string("title"),
            Attribute::string("userType"),
            Attribute::string("preferredLanguage"),
            Attribute::string("locale"),
            Attribute::string("timezone"),
            Attribute::boolean("active"),
            Attribute::string("password").write_only().described("Accepted and discarded: portal logins use SSO."),
            multi_valued_typed("emails", &["work", "home", "other"], AttrType::String),
            multi_valued_typed("phoneNumbers", &["work", "home", "mobile", "fax", "pager", "other"], AttrType::String),
            multi_valued_typed(
                "ims",
                &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
                AttrType::String,
            ),
            multi_valued_typed("photos", &["photo", "thumbnail"], AttrType::Reference),
            Attribute::complex(
                "addresses",
                vec![
                    Attribute::string("formatted"),
                    Attribute::string("streetAddress"),
                    Attribute::string("locality"),
                    Attribute::string("region"),
                    Attribute::string("postalCode"),
                    Attribute::string("country"),
                    Attribute::string("type").canonical(&["work", "home", "other"]),
                    Attribute::boolean("primary"),
                ],
            )
            .multi(),
            Attribute::complex(
                "groups",
                vec![
                    Attribute::string("value").read_only(),
                    Attribute::base("$ref", AttrType::Reference).read_only().refs(&["Group"]),
                    Attribute::string("display").read_only(),
                    Attribute::string("type").canonical(&["direct", "indirect"]).read_only(),
                ],
            )
            .multi()
            .read_only(),
            multi_valued_typed("entitlements", &[], AttrType::String),
            multi_valued_typed("roles", &[], AttrType::String),
            multi_valued_typed("x509Certificates", &[], AttrType::String),
        ],
    }
}

pub fn enterprise_user_schema() -> Schema {
    Schema {
        id: ENTERPRISE_USER,
        name: "EnterpriseUser",
        description: "Enterprise User",
        attributes: vec![
            Attribute::string("employeeNumber"),
            Attribute::string("costCenter"),
            Attribute::string("organization"),
            Attribute::string("division"),
            Attribute::string("department"),
            Attribute::complex(
                "manager",
                vec![
                    Attribute::string("value"),
                    Attribute::base("$ref", AttrType::Reference).refs(&["User"]),
                    Attribute::string("displayName").read_only(),
                ],
            ),
        ],
    }
}

pub fn portal_user_schema() -> Schema {
    Schema {
        id: PORTAL_USER,
        name: "PortalUser",
        description: "idbridge portal attributes of a customer individual",
        attributes: vec![
            // Strings, not dateTime: these are local date-times without offset, read in
            // timeZone (PortaBilling semantics). The canonical values are examples.
            Attribute::string("activationDateTime").canonical(&["2026-01-01", "2026-03-01T08:00:00"]).described(
                "Local date-time (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, no offset) in timeZone when access starts.",
            ),
            Attribute::string("expirationDateTime")
                .canonical(&["2027-01-01", "2027-12-31T18:00:00"])
                .described("Local date-time (no offset) in timeZone when access ends; after the activation."),
            Attribute::string("timeZone")
                .case_exact()
                .canonical(&["UTC", "Europe/Berlin", "Europe/London", "America/New_York", "Asia/Singapore"])
                .described("IANA time zone of the two date-times (any IANA name is accepted)."),
            Attribute::boolean("fullCallReports").described("Sees every call report, not only its scopes."),
            // Comma-separated single strings rather than multi-valued attributes: Entra ID
            // maps one string into a custom extension attribute far more easily than a list.
            Attribute::string("extensions")
                .case_exact()
                .described("PBX extensions in scope, comma-separated (\"101,102\")."),
            Attribute::string("queues").case_exact().described("Call queues in scope, comma-separated."),
            Attribute::string("numbers").case_exact().described("Phone numbers in scope, comma-separated."),
            Attribute::string("billingAccounts").case_exact().described("Billing accounts in scope, comma-separated."),
            Attribute::string("defaultCallerId").case_exact().described("Caller ID used by default."),
        ],
    }
}

pub fn group_schema() -> Schema {
    Schema {
        id: GROUP,
        name: "Group",
        description: "Group",
        attributes: vec![
            Attribute::string("displayName").required().unique(),
            Attribute::complex(
                "members",
                vec![
                    Attribute::string("value").case_exact().immutable(),
                    Attribute::base("$ref", AttrType::Reference).immutable().refs(&["User", "Group"]),
                    Attribute::string("display").read_only(),
                    Attribute::string("type").canonical(&["User", "Group"]).immutable(),
                ],
            )
            .multi(),
        ],
    }
}

/// All schemas idbridge serves, built once.
#[derive(Debug)]
pub struct Schemas {
    pub user: Schema,
    pub enterprise: Schema,
    pub portal: Schema,
    pub group: Schema,
    pub common: Vec<Attribute>,
}

impl Default for Schemas {
    fn default() -> Self {
        Self {
            user: user_schema(),
            enterprise: enterprise_user_schema(),
            portal: portal_user_schema(),
            group: group_schema(),
            common: common_attributes(),
        }
    }
}

impl Schemas {
    pub fn core(&self, kind: ResourceKind) -> &Schema {
        match kind {
            ResourceKind::User => &self.user,
            ResourceKind::Group => &self.group,
        }
    }

    /// An extension schema of `kind` by URN, ignoring case.
    pub fn extension(&self, kind: ResourceKind, urn: &str) -> Option<&Schema> {
        match kind {
            ResourceKind::User => [&self.enterprise, &self.portal].into_iter().find(|s| s.id.eq_ignore_ascii_case(urn)),
            ResourceKind::Group => None,
        }
    }

    pub fn all(&self) -> [&Schema; 4] {
        [&self.user, &self.enterprise, &self.portal, &self.group]
    }

    /// A top-level attribute of the core schema or the common attributes.
    pub fn core_attribute(&self, kind: ResourceKind, name: &str) -> Option<&Attribute> {
        self.core(kind).attribute(name).or_else(|| self.common.iter().find(|a| a.name.eq_ignore_ascii_case(name)))
    }
}
