//! SCIM 2.0 protocol details against the real daemon: filters, sorting, paging, bulk,
//! large groups, lenient paths clients really send, and hostile or malformed input.

use idbridge_e2e::scim::{PATCH, Scim, USER, assert_scim_error};
use idbridge_e2e::{Workdir, workspace_root};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn protocol_details_and_bad_input() {
    let (scim, tokens) = Scim::start(&["delta"]);
    let c = scim.client("delta", &tokens[0]);

    // Discovery describes exactly what is supported.
    let spc = c.get("/ServiceProviderConfig").await.body;
    assert_eq!(spc["pagination"]["cursor"], true);
    assert_eq!(spc["pagination"]["defaultPaginationMethod"], "index");
    assert_eq!(spc["bulk"]["maxPayloadSize"], 65536);
    let types = c.get("/ResourceTypes").await.body;
    assert_eq!(types["Resources"][0]["schemaExtensions"].as_array().unwrap().len(), 2);
    let schemas = c.get("/Schemas").await.body;
    assert_eq!(schemas["totalResults"], 4);
    assert_eq!(c.get(&format!("/Schemas/{USER}")).await.body["attributes"][0]["name"], "userName");
    assert_eq!(c.get("/Me").await.status.as_u16(), 501);

    // Uniqueness: userName without regard to case, group displayName per tenant.
    let bob = c.post("/Users", json!({"userName": "Bob@delta.example"})).await;
    assert_eq!(bob.body["userName"], "Bob@delta.example", "keeps the case it was written with");
    assert_scim_error(&c.post("/Users", json!({"userName": "bob@DELTA.example"})).await, 409, Some("uniqueness"));
    c.post("/Groups", json!({"displayName": "Ops"})).await;
    assert_scim_error(&c.post("/Groups", json!({"displayName": "ops"})).await, 409, Some("uniqueness"));

    // ETags.
    let id = bob.id();
    let not_modified = c.raw(Method::GET, &format!("/Users/{id}"), None, &[("if-none-match", "W/\"1\"")]).await;
    assert_eq!(not_modified.status, 304);
    let stale = c
        .raw(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]}).to_string().into_bytes()),
            &[("if-match", "W/\"7\"")],
        )
        .await;
    assert_eq!(stale.status, 412);
    let fresh = c
        .raw(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]}).to_string().into_bytes()),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.headers["etag"], "W/\"2\"");

    // Malformed requests are 4xx SCIM errors, never 5xx.
    assert_scim_error(
        &c.raw(Method::POST, "/Users", Some(b"{\"userName\": ".to_vec()), &[]).await,
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(
        &c.raw(Method::POST, "/Users", Some(vec![0x7b, 0xff, 0xfe, 0x7d]), &[]).await,
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(&c.post("/Users", json!({"userName": ["a", "b"]})).await, 400, Some("invalidValue"));
    assert_scim_error(
        &c.post("/Users", json!({"userName": "x", "active": "perhaps"})).await,
        400,
        Some("invalidValue"),
    );
    assert_scim_error(&c.post("/Users", json!({"userName": "x", "shoeSize": 44})).await, 400, Some("invalidSyntax"));
    assert_scim_error(
        &c.raw(Method::POST, "/Users", Some(b"{\"userName\": \"x\", \"title\": 1e999}".to_vec()), &[]).await,
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(&c.post("/Users", json!({"name": {"givenName": "x"}})).await, 400, Some("invalidValue"));
    let deep = format!("{}userName pr{}", "(".repeat(100), ")".repeat(100));
    assert_scim_error(&c.get(&format!("/Users?filter={}", urlencode(&deep))).await, 400, Some("invalidFilter"));
    assert_scim_error(&c.get("/Users?filter=userName+zz+%22x%22").await, 400, Some("invalidFilter"));
    assert_scim_error(&c.get("/Users?count=lots").await, 400, Some("invalidValue"));
    assert_scim_error(&c.get("/Users?cursor=bm9wZQ").await, 400, Some("invalidCursor"));
    let nested = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    assert_scim_error(&c.raw(Method::POST, "/Users", Some(nested.into_bytes()), &[]).await, 400, Some("invalidSyntax"));
    let big = json!({"userName": "big", "title": "x".repeat(70_000)});
    assert_eq!(c.post("/Users", big).await.status, 413);
    let wrong_type = c.raw(Method::POST, "/Users", Some(b"{}".to_vec()), &[("content-type", "text/plain")]).await;
    assert_eq!(wrong_type.status, 415);
    assert_scim_error(&c.patch(&format!("/Users/{id}"), json!([{"op": "remove"}])).await, 400, Some("noTarget"));
    assert_scim_error(
        &c.patch(&format!("/Users/{id}"), json!([{"op": "add", "path": "emails[type eq", "value": "x"}])).await,
        400,
        Some("invalidPath"),
    );
    assert_scim_error(&c.get("/Users/not-a-uuid").await, 404, None);
    // A plain application/json body is accepted too.
    let plain = scim
        .http()
        .post(c.url("/Users"))
        .bearer_auth(&c.token)
        .header("content-type", "application/json")
        .body(json!({"userName": "plain"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 201);
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn listing_sorting_pagination_and_bulk() {
    let (scim, tokens) = Scim::start(&["epsilon"]);
    let c = scim.client("epsilon", &tokens[0]);
    let bulk = c.post("/Bulk", json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 2,
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {"userName": "carol", "title": "b"}},
            {"method": "POST", "path": "/Users", "bulkId": "u2", "data": {"userName": "alice", "title": "c"}},
            {"method": "POST", "path": "/Users", "bulkId": "u3", "data": {"userName": "bob", "title": "a"}},
            {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {"displayName": "team", "members": [{"value": "bulkId:u1"}, {"value": "bulkId:u2"}]}},
            {"method": "PATCH", "path": "/Groups/bulkId:g1", "data": {"Operations": [{"op": "add", "path": "members", "value": [{"value": "bulkId:u3"}]}]}},
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "ALICE"}},
            {"method": "PATCH", "path": "/Users/bulkId:nope", "data": {"Operations": []}},
            {"method": "POST", "path": "/Users", "bulkId": "never", "data": {"userName": "dave"}}
        ]
    })).await;
    assert_eq!(bulk.status, 200, "{}", bulk.body);
    let statuses: Vec<&str> =
        bulk.body["Operations"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201", "201", "201", "201", "204", "409", "409"], "stops after failOnErrors errors");
    assert_eq!(c.get("/Users?filter=userName+eq+%22dave%22").await.body["totalResults"], 0);
    let team = c.get("/Groups?filter=displayName+eq+%22team%22").await;
    assert_eq!(team.body["Resources"][0]["members"].as_array().unwrap().len(), 3);

    let sorted = c.get("/Users?sortBy=title&sortOrder=descending").await;
    let names: Vec<&str> =
        sorted.body["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "carol", "bob"]);
    let page = c.get("/Users?startIndex=2&count=1").await;
    assert_eq!(page.body["totalResults"], 3);
    assert_eq!(page.body["startIndex"], 2);
    assert_eq!(page.body["itemsPerPage"], 1);
    assert_eq!(page.body["Resources"][0]["userName"], "alice");
    let only_names = c.get("/Users?attributes=userName&count=1").await;
    let first = only_names.body["Resources"][0].as_object().unwrap();
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["id", "schemas", "userName"]);

    // Cursor pagination walks every user exactly once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = c.get(&format!("/Users?cursor={cursor}&count=2")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        seen.extend(
            page.body["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap().to_owned()),
        );
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["carol", "alice", "bob"]);
    let search = c.post("/Users/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "title pr and not (userName eq \"bob\")", "attributes": ["userName"], "count": 10})).await;
    assert_eq!(search.body["totalResults"], 2);
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"method": "DELETE", "path": format!("/Users/{i}")})).collect();
    let refused = c.post("/Bulk", json!({"Operations": too_many})).await;
    assert_eq!(refused.status, 413);
}

#[tokio::test]
async fn large_groups_stream_their_members_and_member_changes_stay_cheap() {
    let (scim, tokens) = Scim::start(&["zeta"]);
    let c = scim.client("zeta", &tokens[0]);
    let mut ids = Vec::new();
    for chunk in 0..11 {
        let ops: Vec<Value> = (0..500)
            .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{chunk}-{i}"), "data": {"userName": format!("u{chunk}-{i}@zeta.example")}}))
            .collect();
        let answer = c.post("/Bulk", json!({"Operations": ops})).await;
        for op in answer.body["Operations"].as_array().unwrap() {
            assert_eq!(op["status"], "201", "{op}");
            ids.push(op["location"].as_str().unwrap().rsplit('/').next().unwrap().to_owned());
        }
    }
    let gid = c.post("/Groups", json!({"displayName": "everyone"})).await.id();
    for chunk in ids.chunks(1000) {
        let values: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
        assert_eq!(
            c.patch(&format!("/Groups/{gid}"), json!([{"op": "add", "path": "members", "value": values}])).await.status,
            204
        );
    }
    // More than one store page (5,000) of members, streamed as one valid document.
    let group = c.get(&format!("/Groups/{gid}")).await;
    assert_eq!(group.status, 200);
    assert_eq!(group.headers["content-type"], "application/scim+json");
    assert_eq!(group.body["displayName"], "everyone");
    let members = group.body["members"].as_array().unwrap();
    assert_eq!(members.len(), 5500);
    assert_eq!(members[0]["type"], "User");
    let only_values = c.get(&format!("/Groups/{gid}?attributes=members.value")).await;
    assert_eq!(only_values.body["members"][0].as_object().unwrap().len(), 1);
    assert!(only_values.body.get("displayName").is_none());
    assert_eq!(only_values.body["id"], gid.as_str());
    let without = c.get(&format!("/Groups/{gid}?excludedAttributes=members")).await;
    assert!(without.body.get("members").is_none());
    // One member in, one member out, of the 5,500-member group.
    let extra = c.post("/Users", json!({"userName": "extra@zeta.example"})).await.id();
    assert_eq!(
        c.patch(&format!("/Groups/{gid}"), json!([{"op": "add", "path": "members", "value": [{"value": extra}]}]))
            .await
            .status,
        204
    );
    assert_eq!(
        c.patch(&format!("/Groups/{gid}"), json!([{"op": "remove", "path": format!("members[value eq \"{extra}\"]")}]))
            .await
            .status,
        204
    );
    assert_eq!(c.get(&format!("/Groups/{gid}")).await.body["members"].as_array().unwrap().len(), 5500);
}

#[tokio::test]
async fn count_zero_asks_for_the_total_only() {
    let (scim, tokens) = Scim::start(&["eta"]);
    let c = scim.client("eta", &tokens[0]);
    c.post("/Users", json!({"userName": "one@eta.example"})).await;
    for path in ["/Users?count=0", "/Users?cursor=&count=0", "/Users?count=-5", "/Users?startIndex=-3&count=0"] {
        let answer = c.get(path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert_eq!(answer.body["totalResults"], 1, "{path}");
        assert!(answer.body["Resources"].as_array().unwrap().is_empty(), "{path}");
        assert!(answer.body.get("nextCursor").is_none(), "{path}");
    }
}

/// What an attacker or a clumsy client sends answers at once with a clear 4xx: attribute
/// names cut inside a multi-byte character (a panic before), 45,000 values in one
/// attribute (quadratic before: 73 s), and a rule pattern that backtracked exponentially
/// against a long group name (17 s before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_answers_at_once() {
    let work = Workdir::new();
    work.ok(&["apply", workspace_root().join("config/examples/acme.toml").to_str().unwrap()]);
    let rules = work.path().join("rules.json");
    std::fs::write(&rules, r#"[{"name": "dashes", "groups": ["*-*-*-*-*-*-x"], "role": "PBX admin"}]"#).unwrap();
    work.ok(&["mapping", "set-rules", "acme", rules.to_str().unwrap()]);
    let token = work.ok(&["scim-token", "create", "acme"]).trim().to_owned();
    let daemon = work.serve();
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap();
    let url = |p: &str| daemon.url(&format!("/scim/v2/acme{p}"));
    let send = |req: reqwest::RequestBuilder| {
        let token = token.clone();
        async move {
            let started = std::time::Instant::now();
            let res = req.bearer_auth(token).header("content-type", "application/scim+json").send().await;
            let res = res.expect("an answer, not a dropped connection or a hang");
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body, started.elapsed())
        }
    };
    let user: Value = http
        .post(url("/Users"))
        .bearer_auth(&token)
        .json(&json!({"userName": "victim@acme.example"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = user["id"].as_str().unwrap();

    // The fourth byte of `abcé` is inside the `é`.
    let (status, body, _) = send(http.get(url("/Users?filter=abc%C3%A9%20eq%20%22x%22"))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = send(http.get(url("/Users?sortBy=abc%C3%A9"))).await;
    assert!(status == 400 || status == 200, "{status} {body}");
    let (status, body, _) =
        send(http.post(url("/Users/.search")).body(json!({"filter": "abcé eq \"x\""}).to_string())).await;
    assert_eq!(status, 400, "{body}");
    let patch = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "abcé", "value": "x"}]});
    let (status, body, _) = send(http.patch(url(&format!("/Users/{id}"))).body(patch.to_string())).await;
    assert_eq!(status, 400, "{body}");

    // 45,000 e-mail addresses: refused, naming the attribute and the limit, at once.
    let emails: Vec<Value> = (0..45_000).map(|n| json!({"value": format!("{n}@x.io")})).collect();
    let (status, body, took) =
        send(http.post(url("/Users")).body(json!({"userName": "many@acme.example", "emails": emails}).to_string()))
            .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["scimType"], "invalidValue", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("emails has 45000 values; at most 1000"), "{body}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    // 1,000 distinct values with repeats are accepted, the repeats dropped.
    let emails: Vec<Value> = (0..1000).map(|n| json!({"value": format!("b{}@acme.example", n % 500)})).collect();
    let (status, body, _) =
        send(http.post(url("/Users")).body(json!({"userName": "dupes@acme.example", "emails": emails}).to_string()))
            .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["emails"].as_array().unwrap().len(), 500);

    // A group name of 120 dashes against the rule's six stars.
    let group = json!({"displayName": "-".repeat(120), "members": [{"value": id}]});
    let (status, body, took) = send(http.post(url("/Groups")).body(group.to_string())).await;
    assert_eq!(status, 201, "{body}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

/// What real clients send that common servers accept: lower-case resource paths and a
/// trailing slash, Entra ID's user-matching filter on an element's sub-attribute, and a
/// wrong method answered in SCIM's error format.
#[tokio::test]
async fn lenient_paths_the_entra_matching_filter_and_405_bodies() {
    let (scim, tokens) = Scim::start(&["acme"]);
    let c = scim.client("acme", &tokens[0]);
    let created = c
        .post(
            "/users",
            json!({"schemas": [USER], "userName": "ada@acme.example",
                   "emails": [{"value": "ada@acme.example", "type": "work", "primary": true}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    // Entra ID's documented matching query.
    let found = c.get("/Users/?filter=emails%5Btype%20eq%20%22work%22%5D.value%20eq%20%22ada%40acme.example%22").await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    let none = c.get("/users?filter=emails%5Btype%20eq%20%22home%22%5D.value%20eq%20%22ada%40acme.example%22").await;
    assert_eq!(none.body["totalResults"], 0, "{}", none.body);
    let one = c.get(&format!("/USERS/{}", created.id())).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    // `attributes` shapes the answers of POST and PUT too (RFC 7644 §3.9); `id` and
    // `schemas` always come.
    let shaped = c.post("/Users?attributes=userName", json!({"schemas": [USER], "userName": "bob@acme.example"})).await;
    assert_eq!(shaped.status, StatusCode::CREATED, "{}", shaped.body);
    assert_eq!(shaped.body["userName"], "bob@acme.example");
    assert!(shaped.body.get("emails").is_none() && shaped.body.get("meta").is_none(), "{}", shaped.body);
    assert!(shaped.body["id"].is_string());
    let put = c
        .send(
            Method::PUT,
            &format!("/Users/{}?excludedAttributes=emails", created.id()),
            Some(json!({"schemas": [USER], "userName": "ada@acme.example", "emails": [{"value": "ada@acme.example"}]})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert!(put.body.get("emails").is_none(), "{}", put.body);
    assert_eq!(put.body["userName"], "ada@acme.example");
    // A method the endpoint does not take: 405 with a SCIM error body.
    let wrong = c.send(Method::DELETE, "/Users", None).await;
    assert_scim_error(&wrong, 405, None);
}

/// RFC 7644 §3.7.1: "The service provider MUST try to resolve circular cross-references
/// between resources in a single bulk job" — the request below is the RFC's own example
/// (two new groups that contain each other), preceded by a forward reference: a group
/// whose member is a user POSTed later in the same request.
#[tokio::test]
async fn bulk_resolves_forward_and_circular_references() {
    let (scim, tokens) = Scim::start(&["omicron"]);
    let c = scim.client("omicron", &tokens[0]);
    let group = "urn:ietf:params:scim:schemas:core:2.0:Group";
    let bulk = c.post("/Bulk", json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "early", "data": {"schemas": [group], "displayName": "Early", "members": [{"type": "User", "value": "bulkId:later"}]}},
            {"method": "PATCH", "path": "/Users/bulkId:later", "data": {"Operations": [{"op": "replace", "path": "title", "value": "patched"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "later", "data": {"userName": "later@omicron.example"}},
            {"method": "POST", "path": "/Groups", "bulkId": "qwerty", "data": {"schemas": [group], "displayName": "Group A", "members": [{"type": "Group", "value": "bulkId:ytrewq"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "ytrewq", "data": {"schemas": [group], "displayName": "Group B", "members": [{"type": "Group", "value": "bulkId:qwerty"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "self", "data": {"displayName": "Self", "members": [{"value": "bulkId:nobody"}]}}
        ]
    })).await;
    assert_eq!(bulk.status, 200, "{}", bulk.body);
    let ops = bulk.body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    // Results in the request's order, whatever order they ran in.
    assert_eq!(statuses, ["201", "200", "201", "201", "201", "409"], "{}", bulk.body);
    assert_eq!(ops[0]["bulkId"], "early");
    assert!(ops[5]["response"]["detail"].as_str().unwrap().contains("bulkId:nobody"), "{}", ops[5]);
    assert!(ops[5]["response"].get("scimType").is_none(), "409 carries no invalidValue: {}", ops[5]);

    let id_of = |i: usize| ops[i]["location"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let (early, later, a, b) = (id_of(0), id_of(2), id_of(3), id_of(4));
    let members = |body: &Value| -> Vec<String> {
        body["members"]
            .as_array()
            .map_or(vec![], |m| m.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
    };
    assert_eq!(members(&c.get(&format!("/Groups/{early}")).await.body), std::slice::from_ref(&later));
    assert_eq!(c.get(&format!("/Users/{later}")).await.body["title"], "patched");
    let group_a = c.get(&format!("/Groups/{a}")).await;
    assert_eq!(members(&group_a.body), std::slice::from_ref(&b), "{}", group_a.body);
    assert_eq!(members(&c.get(&format!("/Groups/{b}")).await.body), [a]);
    // The version reported for Group A is the one after its held-back member was added.
    assert_eq!(ops[3]["version"], group_a.body["meta"]["version"]);
    assert_eq!(c.get("/Groups?filter=displayName+eq+%22Self%22").await.body["totalResults"], 0);
}
