//! `worker`: a job worker over NATS composing the four tower-reliability layers.
//!
//! Jobs arrive by core NATS request-reply on one subject (a queue group, so each job goes to
//! one worker); each is answered on its reply subject. Settings come from environment variables
//! or the same-named flags (`worker --help`); see the README for the job format, the
//! acknowledgement semantics and the metrics.

mod config;
mod dispatch;
mod http;
mod job;
mod pools;
mod steps;
mod traces;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::task::TaskTracker;
use tower_metrics_layer::prometheus::PrometheusMetrics;

use crate::config::{Args, Settings};
use crate::dispatch::Dispatcher;
use example_support::settings::{EXIT_INVALID, parse_args};

fn main() -> ExitCode {
    let args: Args = match parse_args("worker") {
        Ok(args) => args,
        Err(exit) => return exit,
    };
    let settings = match Settings::from_args(&args) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("worker: {error}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "worker=info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("worker: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let traces = match traces::Traces::from_env(runtime.handle().clone(), "worker") {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("worker: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let result = run(settings, traces.as_ref().map(traces::Traces::tracer)).await;
        if let Some(traces) = traces {
            // The last export goes out through this runtime: wait for it off its threads.
            let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        }
        result
    });
    // A file operation that timed out still occupies a blocking thread (a read of a FIFO with no
    // writer never returns): do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("worker: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    settings: Settings,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&settings.fs_root).map_err(|e| {
        format!(
            "cannot create the FS root {}: {e}",
            settings.fs_root.display()
        )
    })?;
    let metrics = if settings.flags.metrics {
        Some(PrometheusMetrics::builder().without_target_info().build()?)
    } else {
        None
    };
    if let Some(metrics) = &metrics {
        // `tower_deadline::enforce` and `fs` record timeouts (`tower.deadline.exceeded`,
        // where = operation) on the global meter: make it this exporter's.
        opentelemetry::global::set_meter_provider(metrics.meter_provider().clone());
    }
    let meter = metrics.as_ref().map(|m| m.meter("worker"));
    let pools = pools::build(&settings, meter.as_ref(), tracer.as_ref());
    let tasks = TaskTracker::new();
    // Read at each scrape; kept alive as long as the worker runs.
    let _active = meter.as_ref().map(|meter| {
        let tasks = tasks.clone();
        meter
            .u64_observable_gauge("worker.jobs.active")
            .with_description("Jobs started and not yet answered (running or waiting in a pool).")
            .with_unit("{job}")
            .with_callback(move |observer| observer.observe(tasks.len() as u64, &[]))
            .build()
    });

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let addr = listener.local_addr()?;
    tokio::spawn(http::serve(listener, metrics, pools.queues.clone()));

    let client = async_nats::ConnectOptions::new()
        .name("worker")
        .connection_timeout(Duration::from_secs(5))
        .connect(settings.nats_url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", settings.nats_url))?;
    let mut jobs = client
        .queue_subscribe(settings.subject.clone(), settings.queue_group.clone())
        .await?;
    // The server knows the subscription once the flush returns: jobs sent from now on arrive.
    client.flush().await?;
    tracing::info!(
        id = %settings.id,
        nats = %settings.nats_url,
        subject = %settings.subject,
        queue_group = %settings.queue_group,
        flags = ?settings.flags,
        pools = ?settings.pools,
        "worker ready"
    );
    let mut dispatcher = Dispatcher::new(
        &settings,
        pools.services,
        client.clone(),
        tasks.clone(),
        tracer,
    );

    // Scripts and tests wait for this line.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);

    let signal = example_support::wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            message = jobs.next() => match message {
                Some(message) => dispatcher.dispatch(message).await,
                None => break,
            },
            () = &mut signal => break,
        }
    }
    // Drain: stop pulling (unsubscribe; the server sends new jobs to the other workers of the
    // group, or answers "no responders"), then take in what was already delivered, so that
    // every job this worker received gets an answer.
    tracing::info!("signal received: unsubscribing, finishing started jobs");
    let limit = settings.timeout + Duration::from_secs(1);
    // Each step that talks to nats-server is bounded: with the server gone, async-nats keeps
    // reconnecting and an unbounded wait would never let the worker exit.
    if let Ok(Ok(())) = tokio::time::timeout(limit, jobs.drain()).await {
        let delivered = async {
            while let Some(message) = jobs.next().await {
                dispatcher.dispatch(message).await;
            }
        };
        if tokio::time::timeout(limit, delivered).await.is_err() {
            tracing::warn!("the subscription did not close in time");
        }
    }
    tasks.close();
    if tokio::time::timeout(limit, tasks.wait()).await.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "jobs still running past the deadline cap; exiting"
        );
    }
    // The replies are queued in the client: send them before exiting.
    match tokio::time::timeout(limit, client.flush()).await {
        Ok(Ok(())) => {
            tracing::info!(
                received = dispatcher.received(),
                "stopped: every received job was answered"
            );
            Ok(())
        }
        Ok(Err(error)) => Err(format!("replies not sent before exiting: {error}").into()),
        Err(_) => Err(format!(
            "replies not sent before exiting: nats-server did not take them within {limit:?}"
        )
        .into()),
    }
}
