//! The admin API's request parsing, through its real router: any method, path, query string
//! and body — with the token or without — gets an answer (a status and a sentence), never a
//! panic or a 500 caused by the input alone.
//!
//! Input: the first byte picks the method and which token is sent (none, an admin's, or a
//! service's `request` token, which may ask for access and check out certificates); the text
//! up to the first newline is the path and query; the rest is the body (sent as JSON).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use portcullis::admin::{AdminState, router};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-admin-token-0123456789";
const SERVICE_TOKEN: &str = "fuzz-service-token-0123456789";

struct Api {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let hash = portcullis::credentials::password::hash(TOKEN).expect("a token hash");
        let service_hash =
            portcullis::credentials::password::hash(SERVICE_TOKEN).expect("a token hash");
        let config = dir.path().join("portcullis.toml");
        // A service eligible for a target without approval (grants and certificates at once)
        // and one needing an approval (requests that wait).
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
                 [[admin.tokens]]\nname = \"fuzz\"\nhash = {hash:?}\nscopes = [\"read\", \"operate\", \"admin\"]\n\n\
                 [[admin.tokens]]\nname = \"ci\"\nhash = {service_hash:?}\nscopes = [\"request\"]\nuser = \"ci\"\n\n\
                 [[users]]\nname = \"ci\"\nkind = \"service\"\n\n\
                 [[targets]]\nname = \"app01\"\naddress = \"127.0.0.1:1\"\nlogin = \"deploy\"\nauth = \"certificate\"\n\
                 host_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRODk9/l/E5aOv1Se9WN+nhXGK1Hley/7l4tMGctZAq\"\n\n\
                 [[targets]]\nname = \"db01\"\naddress = \"127.0.0.1:1\"\nlogin = \"deploy\"\nauth = \"certificate\"\n\
                 host_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKRODk9/l/E5aOv1Se9WN+nhXGK1Hley/7l4tMGctZAq\"\n\n\
                 [[roles]]\nname = \"deploy\"\nmembers = [\"ci\"]\ntargets = [\"app01\"]\naccess = \"eligible\"\n\
                 max_duration = \"1h\"\n\n\
                 [[roles]]\nname = \"dba\"\nmembers = [\"ci\"]\ntargets = [\"db01\"]\naccess = \"eligible\"\n\
                 max_duration = \"1h\"\napprovals = 1\napprovers = [\"deploy\"]\n",
                dir.path().join("data").display().to_string()
            ),
        )
        .expect("write the config");
        let (loaded, directory) = portcullis::cli::load(&config).expect("a valid config");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let services = runtime
            .block_on(portcullis::services::Services::open(
                loaded.config,
                directory,
                None,
                Arc::new(portcullis_policy::SystemClock),
            ))
            .expect("the services");
        let router = router(Arc::new(AdminState {
            services: Arc::new(services),
            tokens: Default::default(),
            tickets: Default::default(),
            peer_nonces: Default::default(),
        }));
        Api {
            runtime,
            router,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let method = ["GET", "POST", "DELETE", "PUT"][usize::from(selector & 3)];
    let token = match (selector >> 2) & 3 {
        0 | 1 => Some(TOKEN),
        2 => Some(SERVICE_TOKEN),
        _ => None,
    };
    let (target, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let mut request = Request::builder()
        .method(method)
        .uri(format!("/{}", target.trim_start_matches('/')))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    // A target that is not a URI is refused by the HTTP layer before the router.
    let Ok(mut request) = request.body(Body::from(body.to_vec())) else {
        return;
    };
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let api = api();
    let response = api
        .runtime
        .block_on(api.router.clone().oneshot(request))
        .expect("the router always answers");
    assert_ne!(
        response.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "{method} /{target}: an input made the API fail"
    );
});
