//! `gateway`: an HTTP API gateway composing the four tower-reliability layers.
//!
//! Settings come from environment variables or the same-named flags (`gateway --help`); see the
//! README for the table and the layer stack.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use tower_metrics_layer::prometheus::PrometheusMetrics;

use example_support::settings::{EXIT_INVALID, parse_args};
use gateway::config::{Args, LogFormat, Settings, Upstream};
use gateway::{canary, demo_provider, edge, serve, stack, traces};

fn main() -> ExitCode {
    let args: Args = match parse_args("gateway") {
        Ok(args) => args,
        Err(exit) => return exit,
    };
    let settings = match Settings::from_args(&args) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("gateway: {error}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "gateway=info".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match settings.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // The request's span (`trace_id`) rides along as `span` on every line inside it.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    // Set-up, signals and the embedded demo provider; requests are served on the workers'
    // runtimes (`serve`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gateway: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let traces = match traces::Traces::from_env(runtime.handle().clone(), "gateway") {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("gateway: {error}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let outcome = runtime.block_on(async {
        let outcome = run(settings, traces.as_ref()).await;
        if let Some(traces) = traces {
            // The last export goes out through this runtime: wait for it off the runtime's
            // thread, which keeps running the export meanwhile.
            let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        }
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gateway: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    settings: Settings,
    traces: Option<&traces::Traces>,
) -> Result<(), Box<dyn std::error::Error>> {
    let tracer = traces.map(traces::Traces::tracer);
    let listeners = serve::bind(settings.listen, settings.workers)
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let addr = listeners[0].local_addr()?;

    let upstreams = match &settings.upstreams {
        Some(list) => list.clone(),
        None => {
            // Two instances of it, so that the demo (and the dashboard) show balancing.
            let first = demo_provider::start(settings.demo).await?;
            let second = demo_provider::start(settings.demo).await?;
            tracing::info!(%first, %second, "no GATEWAY_UPSTREAMS: started the embedded demo provider (two instances)");
            let instances = vec![format!("http://{first}"), format!("http://{second}")];
            vec![Upstream {
                name: "demo".to_string(),
                base: instances[0].clone(),
                instances,
            }]
        }
    };
    let metrics = if settings.flags.metrics {
        Some(PrometheusMetrics::builder().without_target_info().build()?)
    } else {
        None
    };
    let sides = canary::sides(&settings.rollout);
    let built: Vec<_> = sides
        .iter()
        .map(|side| {
            stack::build(
                &settings,
                &upstreams,
                metrics.as_ref(),
                side,
                tracer.as_ref(),
            )
        })
        .collect();
    let queues: Vec<_> = built.iter().filter_map(|b| b.queue.clone()).collect();
    let app = canary::steer(&sides, built.into_iter().map(|b| b.app).collect());
    tracing::info!(
        rollout = ?settings.rollout,
        routing = ?settings.routing,
        workers = listeners.len(),
        providers = ?upstreams.iter().map(|u| &u.name).collect::<Vec<_>>(),
        "gateway ready"
    );
    let edge = edge::Edge::new(
        settings.edge.clone(),
        metrics.as_ref().map(|m| m.meter("gateway")).as_ref(),
    );
    let mut workers = serve::start(listeners, app, edge)?;
    // Kept alive as long as the gateway runs; read at each scrape.
    let _tasks_gauge = metrics.as_ref().map(|metrics| {
        let alive_tasks = workers.alive_tasks();
        metrics
            .meter("gateway")
            .u64_observable_gauge("gateway.runtime.alive_tasks")
            .with_description("Tasks alive on the workers' runtimes.")
            .with_unit("{task}")
            .with_callback(move |observer| observer.observe(alive_tasks() as u64, &[]))
            .build()
    });

    // Scripts and tests wait for this line; flush before serving.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);

    example_support::wait_for_signal().await;
    tracing::info!("signal received: no new connections, draining in-flight requests");
    workers.stop();
    // Draining is bounded by the deadline cap (plus a little for answers to be written).
    let limit = settings.timeout + Duration::from_secs(1);
    let drained = async {
        workers.finished().await?;
        for queue in &queues {
            queue.drain().await;
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(limit, drained).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(?limit, "drain took longer than the deadline cap; exiting"),
    }
    tracing::info!("stopped");
    Ok(())
}
