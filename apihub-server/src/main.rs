//! `apihub`: the gateway binary.
//!
//! ```text
//! apihub [serve]                      start the gateway (the default)
//! apihub migrate                      apply pending database migrations and exit
//! apihub admin create --username NAME [--password PW | password on stdin]
//! apihub openapi                      print the OpenAPI document as JSON
//! ```

use std::io::Read;

use anyhow::Context;
use apihub_server::app::{AdminBootstrap, create_admin, ensure_admin, init_state};
use apihub_server::config::Config;
use apihub_server::{build_app, db};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "apihub", version, about = "API-key gateway for LLM APIs")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the OpenAPI document as JSON.
    Openapi,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an administrator account.
    Create {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Password; read from standard input when absent (safer: keeps it out of the shell history).
        #[arg(long)]
        password: Option<String>,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn")))
        .init();
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            println!("{}", apihub_server::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Migrate => {
            let config = Config::from_env()?;
            let applied = db::migrate(&config.database_url).await?;
            println!("applied {applied} migration(s)");
            Ok(())
        }
        Command::Admin { command: AdminCommand::Create { username, password, email } } => {
            let password = match password {
                Some(p) => p,
                None => {
                    let mut input = String::new();
                    std::io::stdin().read_to_string(&mut input).context("reading the password from stdin")?;
                    input.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let state = init_state(Config::from_env()?).await?;
            create_admin(state.store.as_ref(), &username, &password, email).await?;
            println!("created administrator `{username}`");
            Ok(())
        }
        Command::Serve => serve().await,
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let address = format!("{}:{}", config.host, config.port);
    let state = init_state(config).await?;
    match ensure_admin(&state).await? {
        AdminBootstrap::Existing => {}
        AdminBootstrap::Created => {
            tracing::info!(username = %state.config.admin_username, "created the first administrator")
        }
        AdminBootstrap::Generated(password) => {
            // Shown once, on the terminal only; it is not logged anywhere else.
            eprintln!(
                "\n  First start: created administrator `{}` with password: {password}\n  Change it after logging in (POST /api/auth/password).\n",
                state.config.admin_username
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("binding {address}"))?;
    tracing::info!("APIHub listening on http://{address} (API docs at /docs)");
    axum::serve(listener, build_app(state)).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
