//! Model Search: the proposal rules (insert and replace positions, depth
//! thresholds, the beam), name-stable weight transfer between a parent and
//! its child, the SQLite archive (ids, the trial limit, heartbeats, whose
//! archive it is), a tiny search end to end, two worker processes sharing
//! one archive with one killed mid-trial, and configs refused by key.

mod common;
#[path = "common/model_search.rs"]
mod model_search_config;

use model_search_config::tiny_search;

use audionas::data::prepare::PrepareOptions;
use audionas::gpu::Gpu;
use audionas::model::Network;
use audionas::search::model_search::archive::{
    open_archive, open_unchecked, ArchiveUrl, NewTrial, Outcome, TrialState,
};
use audionas::search::model_search::blocks::{
    effective_tower, fix_order, tower_architecture, TowerSettings,
};
use audionas::search::model_search::config::{strategy_of, ModelSearchConfig};
use audionas::search::model_search::plots::{pareto_front, PARETO_FILE, SCORE_FILE, TREE_FILE};
use audionas::search::model_search::proposal::{
    allowed_depth, depth, insert, propose, replace, Move, ProposalRules, Scored,
};
use audionas::search::model_search::worker::{run_worker, search_id, WorkerOptions};
use audionas::search::model_search::{summarise, ARCHIVE_FILE};
use audionas::train::config::Experiment;
use audionas::train::run_dir::RunDir;
use audionas::util::rng::Rng;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tower(blocks: &[&str]) -> Vec<String> {
    blocks.iter().map(|s| s.to_string()).collect()
}

fn rules() -> ProposalRules {
    ProposalRules {
        blocks: tower(&["conv_3x3", "separable_3x3", "dense_64", "max_pool_2x2"]),
        minimum_depth: 2,
        maximum_depth: 5,
        depth_step: 5,
        beam_size: 2,
        increase_probability: 0.9,
        random: false,
        suggested: Vec::new(),
    }
}

#[test]
fn depth_grows_by_one_block_every_five_completed_trials_within_its_bounds() {
    let depths: Vec<usize> = [0, 4, 5, 9, 10, 14, 100]
        .iter()
        .map(|&n| allowed_depth(n, 2, 4, 5))
        .collect();
    assert_eq!(depths, [2, 2, 3, 3, 4, 4, 4]);
    assert_eq!(allowed_depth(7, 1, 9, 1), 8);
    // The flattening block is not counted.
    assert_eq!(
        depth(&tower(&["conv_3x3", "global_avg_pool", "dense_64"])),
        2
    );
}

#[test]
fn convolutions_go_before_the_flattening_block_and_dense_blocks_after() {
    let fixed = fix_order(&tower(&["dense_64", "conv_3x3", "max_pool_2x2"])).unwrap();
    assert_eq!(
        fixed,
        tower(&["conv_3x3", "max_pool_2x2", "global_avg_pool", "dense_64"])
    );
    // The first flattening block is kept, the others dropped.
    let fixed = fix_order(&tower(&["flatten", "conv_3x3", "global_avg_pool"])).unwrap();
    assert_eq!(fixed, tower(&["conv_3x3", "flatten"]));
    assert!(fix_order(&tower(&["conv_9x9"]))
        .unwrap_err()
        .contains("unknown block \"conv_9x9\""));
    // Sequence blocks stand between the convolutions and the flattening.
    let fixed = fix_order(&tower(&["dense_64", "lstm_64", "conv_3x3", "svdf_64_4_1"])).unwrap();
    assert_eq!(
        fixed,
        tower(&[
            "conv_3x3",
            "lstm_64",
            "svdf_64_4_1",
            "global_avg_pool",
            "dense_64"
        ])
    );
    assert_eq!(
        insert(&fixed, "conv1d_3"),
        tower(&[
            "conv_3x3",
            "lstm_64",
            "svdf_64_4_1",
            "conv1d_3",
            "global_avg_pool",
            "dense_64"
        ])
    );
    assert_eq!(
        insert(&fixed, "max_pool_2x2"),
        tower(&[
            "conv_3x3",
            "max_pool_2x2",
            "lstm_64",
            "svdf_64_4_1",
            "global_avg_pool",
            "dense_64"
        ])
    );

    let parent = tower(&["conv_3x3", "global_avg_pool", "dense_64"]);
    assert_eq!(
        insert(&parent, "separable_3x3"),
        tower(&["conv_3x3", "separable_3x3", "global_avg_pool", "dense_64"])
    );
    assert_eq!(
        insert(&parent, "dense_128"),
        tower(&["conv_3x3", "global_avg_pool", "dense_64", "dense_128"])
    );
    assert_eq!(
        insert(&parent, "flatten"),
        tower(&["conv_3x3", "flatten", "dense_64"])
    );
    // A dense block put where a convolution stood moves behind the flattening block.
    assert_eq!(
        replace(&parent, 0, "dense_128"),
        tower(&["global_avg_pool", "dense_128", "dense_64"])
    );
    assert_eq!(
        replace(&parent, 2, "conv_5x5"),
        tower(&["conv_3x3", "conv_5x5", "global_avg_pool"])
    );
}

fn scored(id: i64, blocks: &[&str], score: f64) -> Scored {
    Scored {
        id,
        tower: tower(blocks),
        score,
    }
}

#[test]
fn proposals_follow_coordinate_descent() {
    let mut rng = Rng::new(1);
    // No completed trial: a random tower of the minimum depth (plus the flattening block).
    let first = propose(&rules(), 0, &[], &mut rng);
    assert_eq!((first.how, first.parent), (Move::Random, None));
    assert!((2..=3).contains(&first.tower.len()), "{:?}", first.tower);

    // Suggested towers come first, in order.
    let mut with_suggestions = rules();
    with_suggestions.suggested = vec![tower(&["dense_64"]), tower(&["conv_3x3"])];
    let second = propose(&with_suggestions, 1, &[], &mut rng);
    assert_eq!(second.how, Move::Suggested);
    assert_eq!(second.tower, tower(&["conv_3x3", "global_avg_pool"]));

    // Parents come from the beam (the 2 best) only.
    let completed = [
        scored(1, &["conv_3x3", "conv_3x3", "global_avg_pool"], 0.5),
        scored(2, &["separable_3x3", "conv_3x3", "global_avg_pool"], 0.9),
        scored(3, &["max_pool_2x2", "conv_3x3", "global_avg_pool"], 0.1),
        scored(4, &["conv_3x3", "flatten", "dense_64"], 0.8),
    ];
    let mut moves = [0usize; 2];
    for _ in 0..200 {
        let p = propose(&rules(), 4, &completed, &mut rng);
        let parent = p.parent.expect("a child has a parent");
        assert!(
            parent == 2 || parent == 4,
            "parent {parent} is not in the beam"
        );
        let parent_tower = &completed.iter().find(|c| c.id == parent).unwrap().tower;
        // 4 completed trials allow depth 2, which the parents have: always
        // replace, never the flattening block.
        assert_eq!(p.how, Move::Replace);
        assert_eq!(depth(&p.tower), 2);
        assert!(p.tower.contains(
            &parent_tower
                .iter()
                .find(|b| b.contains("flatten") || b.contains("global"))
                .unwrap()
                .clone()
        ));
        moves[(parent == 4) as usize] += 1;
    }
    assert!(
        moves[0] > 50 && moves[1] > 50,
        "parents drawn unevenly: {moves:?}"
    );

    // Ten completed trials allow depth 4: inserts, about 9 in 10.
    let many: Vec<Scored> = (0..10)
        .map(|i| scored(i, &["conv_3x3", "conv_3x3", "global_avg_pool"], i as f64))
        .collect();
    let inserts = (0..400)
        .filter(|_| propose(&rules(), 10, &many, &mut rng).how == Move::Insert)
        .count();
    assert!((320..=390).contains(&inserts), "{inserts} inserts of 400");
    let mut always = rules();
    always.increase_probability = 1.0;
    let child = propose(&always, 10, &many, &mut rng);
    assert_eq!(depth(&child.tower), 3);
    always.increase_probability = 0.0;
    assert_eq!(propose(&always, 10, &many, &mut rng).how, Move::Replace);

    // Random search draws depths across the whole range.
    let mut random = rules();
    random.random = true;
    let depths: std::collections::BTreeSet<usize> = (0..200)
        .map(|_| {
            let p = propose(&random, 4, &completed, &mut rng);
            assert_eq!((p.how, p.parent), (Move::Random, None));
            depth(&p.tower)
        })
        .collect();
    assert_eq!(depths, (2..=5).collect(), "random depths");
}

const SETTINGS: TowerSettings = TowerSettings {
    min_channels: 4,
    batch_norm: true,
};

#[test]
fn a_child_shares_names_and_weights_with_exactly_its_parents_unchanged_prefix() {
    let input = [1, 49, 10];
    let parent_tower = tower(&["conv_3x3", "separable_3x3", "global_avg_pool", "dense_64"]);
    let child_tower = replace(&parent_tower, 1, "resnet_3x3");
    let parent = tower_architecture("parent", &parent_tower, input, SETTINGS).unwrap();
    let child = tower_architecture("child", &child_tower, input, SETTINGS).unwrap();
    let names = |a: &audionas::model::Architecture| -> Vec<String> {
        a.layers.iter().map(|l| l.name.clone().unwrap()).collect()
    };
    let (p, c) = (names(&parent), names(&child));
    let shared: Vec<&String> = c.iter().filter(|n| p.contains(n)).collect();
    assert!(!shared.is_empty());
    assert!(
        shared.iter().all(|n| n.starts_with("b0.conv_3x3.")),
        "{shared:?}"
    );
    assert!(p
        .iter()
        .filter(|n| n.starts_with("b0."))
        .all(|n| c.contains(n)));

    let gpu = Gpu::shared();
    let parent_net = Network::build(gpu, &parent, &input, 3, 1).unwrap();
    let child_net = Network::build(gpu, &child, &input, 3, 2).unwrap();
    let report = child_net.inherit_from(gpu, &parent_net).unwrap();
    assert!(!report.copied.is_empty());
    assert!(
        report.copied.iter().all(|n| n.starts_with("b0.")),
        "{:?}",
        report.copied
    );
    assert!(report.reshaped.is_empty());
    let of = |net: &Network, name: &str| {
        let state = net.state();
        let (_, t) = state.iter().find(|(n, _)| n == name).unwrap();
        gpu.download(t).unwrap()
    };
    for name in &report.copied {
        assert_eq!(of(&child_net, name), of(&parent_net, name), "{name}");
    }
    // Appending a dense block keeps every convolution and the flattening.
    let grown = insert(&parent_tower, "dense_128");
    let grown = tower_architecture("grown", &grown, input, SETTINGS).unwrap();
    let g = names(&grown);
    assert!(p
        .iter()
        .filter(|n| !n.starts_with("head."))
        .all(|n| g.contains(n)));
}

#[test]
fn the_hello_edge_tower_costs_exactly_what_ds_cnn_s_costs() {
    // DS-CNN's strided 10x4 stem and four separable blocks, as blocks.
    let hello_edge = tower(&[
        "downsample_10x4",
        "separable_3x3",
        "separable_3x3",
        "separable_3x3",
        "separable_3x3",
    ]);
    let settings = TowerSettings {
        min_channels: 32,
        batch_norm: true,
    };
    let ds_cnn_s = Experiment::load(Path::new("configs/ds_cnn_s.toml")).unwrap();
    let input = [1, 49, 10];
    let tower = tower_architecture("hello_edge", &hello_edge, input, settings).unwrap();
    let cost = |arch| audionas::model::Cost::of(arch, &input, 12, 1000.0, None).unwrap();
    let (ours, theirs) = (cost(&tower), cost(&ds_cnn_s.model));
    assert_eq!((ours.params, ours.macs), (theirs.params, theirs.macs));
    assert_eq!(ours.params, 23_180);
}

#[test]
fn every_block_builds_trains_one_step_and_is_skipped_where_too_small() {
    use audionas::search::model_search::blocks::BLOCKS;
    let gpu = Gpu::shared();
    for (block, _) in BLOCKS {
        // The pools and the 7-tall kernel meet a 3x2 map.
        for input in [[1, 12, 10], [1, 3, 2]] {
            let t = tower(&["fixed_conv_16", block, "dense_residual"]);
            let arch = tower_architecture("one", &t, input, SETTINGS).unwrap();
            audionas::model::Cost::of(&arch, &input, 3, 1000.0, None)
                .unwrap_or_else(|e| panic!("{block} on {input:?}: {e}"));
            let mut net = Network::build(gpu, &arch, &input, 3, 0)
                .unwrap_or_else(|e| panic!("{block} on {input:?}: {e}"));
            let x = gpu
                .upload(
                    &[2, input[0], input[1], input[2]],
                    &Rng::new(1).vec_uniform(2 * input.iter().product::<usize>(), -1.0, 1.0),
                )
                .unwrap();
            let dlogits = gpu
                .upload(&[2, 3], &[0.1, -0.2, 0.1, 0.3, 0.0, -0.3])
                .unwrap();
            let mut rec = gpu.recorder();
            net.forward(&mut rec, &x, audionas::nn::Pass::train(1))
                .unwrap();
            net.backward(&mut rec, &dlogits).unwrap();
            rec.submit_and_wait().unwrap();
            for p in net.params() {
                let grad = gpu.download(&p.grad).unwrap();
                assert!(grad.iter().all(|g| g.is_finite()), "{block} on {input:?}");
            }
        }
    }
    let pooled = tower_architecture("p", &tower(&["max_pool_2x2"]), [1, 1, 5], SETTINGS).unwrap();
    assert!(pooled.layers.iter().all(|l| l.op.name() != "max_pool2d"));
    // [1, 5, 4] pools to [c, 2, 2], then [c, 1, 1]; a third pool adds nothing.
    let pools = tower(&[
        "fixed_conv_16",
        "avg_pool_2x2",
        "max_pool_2x2",
        "avg_pool_2x2",
        "dense_64",
    ]);
    assert_eq!(
        effective_tower(&pools, [1, 5, 4], SETTINGS).unwrap(),
        tower(&[
            "fixed_conv_16",
            "avg_pool_2x2",
            "max_pool_2x2",
            "global_avg_pool",
            "dense_64"
        ])
    );
}

fn new_trial(worker: &str) -> NewTrial {
    NewTrial {
        parent: None,
        tower: tower(&["conv_3x3", "global_avg_pool"]),
        hparams: serde_json::json!({"lr": 0.01}),
        params: 10,
        macs: 100,
        worker: worker.into(),
    }
}

/// The PostgreSQL server of the tests: `AUDIONAS_TEST_POSTGRES`, which
/// scripts/test.sh sets from scripts/postgres.sh.
fn postgres_server() -> String {
    std::env::var("AUDIONAS_TEST_POSTGRES").expect(
        "AUDIONAS_TEST_POSTGRES is not set: run the tests with scripts/test.sh, or set it to the URL that scripts/postgres.sh prints",
    )
}

/// A fresh, empty archive on the test server: its own schema.
fn fresh_postgres(tag: &str) -> ArchiveUrl {
    let server = postgres_server();
    let schema = format!(
        "t_{tag}_{}_{}",
        std::process::id(),
        Rng::new(tag.len() as u64 ^ std::process::id() as u64).next_u64() % 1_000_000
    );
    let mut client = postgres::Client::connect(&server, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap();
    let separator = if server.contains('?') { '&' } else { '?' };
    ArchiveUrl::parse(&format!(
        "{server}{separator}options=-csearch_path%3D{schema}"
    ))
}

fn fresh_sqlite(dir: &Path, tag: &str) -> ArchiveUrl {
    ArchiveUrl::Sqlite(dir.join(format!("{tag}.sqlite")))
}

/// What both stores must do: number trials, keep the limit, fail silent
/// trials, and refuse an archive of another search, a newer schema or
/// another program.
fn check_archive(fresh: &dyn Fn(&str) -> ArchiveUrl) {
    let url = fresh("a");
    let mut a = open_archive(&url, "search-a").unwrap();
    let mut b = open_archive(&url, "search-a").unwrap();
    let first = a.start_trial(&new_trial("w0"), 3).unwrap().unwrap();
    let second = b.start_trial(&new_trial("w1"), 3).unwrap().unwrap();
    let third = a.start_trial(&new_trial("w0"), 3).unwrap().unwrap();
    assert!(first < second && second < third);
    assert_eq!(
        b.start_trial(&new_trial("w1"), 3).unwrap(),
        None,
        "a fourth trial of 3"
    );

    let metrics = serde_json::json!({"val_accuracy": 0.75});
    a.finish(
        first,
        &Outcome::Completed {
            score: 0.75,
            metrics: metrics.clone(),
            model_path: "trials/0001/model.safetensors".into(),
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    b.heartbeat(second).unwrap();
    // Third's heartbeat is over a second old; second's is fresh.
    assert_eq!(a.fail_stale(1.0).unwrap(), vec![third]);
    let trials = b.trials().unwrap();
    let states: Vec<TrialState> = trials.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            TrialState::Completed,
            TrialState::Running,
            TrialState::Failed
        ]
    );
    assert_eq!(trials[0].metrics.as_ref(), Some(&metrics));
    assert_eq!(trials[0].score, Some(0.75));
    assert_eq!(trials[0].tower, new_trial("w0").tower);
    assert_eq!(trials[1].worker, "w1");
    assert!(trials[2].error.as_ref().unwrap().contains("heartbeats"));

    let other = format!("{:#}", open_archive(&url, "search-b").err().unwrap());
    assert!(other.contains("belongs to another search"), "{other}");
    let newer = fresh("newer");
    open_archive(&newer, "s").unwrap();
    open_unchecked(&newer)
        .unwrap()
        .set_meta("schema", "99")
        .unwrap();
    let message = format!("{:#}", open_archive(&newer, "s").err().unwrap());
    assert!(message.contains("schema 99, newer"), "{message}");
    let foreign = fresh("foreign");
    open_unchecked(&foreign)
        .unwrap()
        .set_meta("format", "someone-else")
        .unwrap();
    let message = format!("{:#}", open_archive(&foreign, "s").err().unwrap());
    assert!(message.contains("not a Model Search archive"), "{message}");
}

#[test]
fn the_sqlite_archive_numbers_trials_keeps_the_limit_and_fails_silent_ones() {
    let dir = tempfile::tempdir().unwrap();
    check_archive(&|tag| fresh_sqlite(dir.path(), tag));
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database at all, just words").unwrap();
    let message = format!(
        "{:#}",
        open_archive(&ArchiveUrl::Sqlite(text), "s").err().unwrap()
    );
    assert!(message.contains("notes.txt"), "{message}");
}

#[test]
fn the_postgres_archive_numbers_trials_keeps_the_limit_and_fails_silent_ones() {
    check_archive(&fresh_postgres);
    // Nothing listens on port 1: an error naming the host, well within the wait.
    let started = Instant::now();
    let url = ArchiveUrl::parse("postgres://someone:secret@127.0.0.1:1/nowhere");
    let message = format!("{:#}", open_archive(&url, "s").err().unwrap());
    assert!(message.contains("PostgreSQL server 127.0.0.1"), "{message}");
    assert!(
        !message.contains("secret"),
        "the password is shown: {message}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

fn parse(text: &str) -> Result<ModelSearchConfig, String> {
    ModelSearchConfig::parse(text, Path::new("ms.toml")).map_err(|e| e.to_string())
}

/// One worker in this process, on the tone data in `dir/data` and the run's SQLite archive.
fn in_process_worker(dir: &Path, run: &RunDir) -> WorkerOptions {
    WorkerOptions {
        data_dir: dir.join("data"),
        prepare: prepare(dir),
        archive: ArchiveUrl::Sqlite(run.root.join(ARCHIVE_FILE)),
        worker: "test".into(),
        index: 0,
        verbose: false,
    }
}

fn prepare(dir: &Path) -> PrepareOptions {
    PrepareOptions {
        cache_dir: Some(dir.join("cache")),
        threads: 1,
        ..PrepareOptions::default()
    }
}

#[test]
fn a_tiny_search_transfers_weights_to_children_and_its_best_tower_retrains() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 5);
    let config = parse(&tiny_search(
        4,
        "suggested = [[\"conv_3x3\"]]\nbeam_size = 1",
    ))
    .unwrap();
    let run = RunDir::create(&dir.path().join("runs"), "ms", &config.to_toml()).unwrap();
    let options = in_process_worker(dir.path(), &run);
    let report = run_worker(Gpu::shared(), &config, &run.root, &options).unwrap();
    assert_eq!((report.completed, report.failed), (4, 0));
    let trials = open_archive(&options.archive, &search_id(&config))
        .unwrap()
        .trials()
        .unwrap();
    assert_eq!(trials.len(), 4);
    assert_eq!(trials[0].tower, tower(&["conv_3x3", "global_avg_pool"]));
    assert_eq!(trials[0].parent, None);
    for child in &trials[1..] {
        // The beam holds the one best trial; each child inserts a block into it.
        let parent = child
            .parent
            .expect("children of coordinate descent have parents");
        assert!(parent < child.id);
        let metrics = child.metrics.as_ref().unwrap();
        assert!(
            metrics["inherited_tensors"].as_u64().unwrap() > 0,
            "trial {}: {metrics}",
            child.id
        );
        assert_eq!(child.hparams["move"], "insert");
    }
    assert!(trials.iter().all(|t| t.params > 0 && t.macs > 0));
    let mirrored = std::fs::read_to_string(run.root.join("trials.jsonl")).unwrap();
    assert_eq!(mirrored.lines().count(), 4);
    for plot in [SCORE_FILE, PARETO_FILE] {
        assert!(run.plots_dir().join(plot).is_file(), "{plot}");
    }
    // Every trial in the tree, each child indented one step below its parent.
    let tree = std::fs::read_to_string(run.root.join(TREE_FILE)).unwrap();
    assert_eq!(tree.lines().count(), 4, "{tree}");
    let indent = |id: i64| {
        let line = tree
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("trial {id} ")))
            .unwrap();
        line.len() - line.trim_start().len()
    };
    assert_eq!(indent(1), 0);
    for child in &trials[1..] {
        assert_eq!(
            indent(child.id),
            indent(child.parent.unwrap()) + 2,
            "{tree}"
        );
    }

    let summary = summarise(&run.root, "coordinate-descent", &trials).unwrap();
    let best = summary.best.clone().unwrap();
    let top = trials
        .iter()
        .map(|t| t.score.unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(best.score, Some(top));
    let arch = audionas::model::Architecture::load(&summary.architecture.unwrap()).unwrap();
    assert_eq!(summary.params, best.params);

    // The best tower retrains from scratch as any description.
    let mut experiment = Experiment::parse(common::TINY_CONFIG, Path::new("tiny.toml")).unwrap();
    experiment.model = arch;
    experiment.train.epochs = 1;
    let retrain =
        RunDir::create(&dir.path().join("runs"), "retrain", &experiment.to_toml()).unwrap();
    let train_options = audionas::train::trainer::TrainOptions {
        data_dir: dir.path().join("data"),
        prepare: prepare(dir.path()),
        resume: false,
        stop_after_epochs: None,
        verbose: false,
        init_from: None,
    };
    let retrained =
        audionas::train::trainer::train(Gpu::shared(), &experiment, &retrain, &train_options)
            .unwrap();
    assert_eq!(retrained.params, best.params);
}

/// Two `search-worker` processes on one archive (the run's SQLite file, or
/// `archive` given to both); the first is killed while it trains a trial.
fn check_two_workers(archive: Option<ArchiveUrl>) {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 9);
    let text = tiny_search(5, "heartbeat_seconds = 0.5\nstale_after_seconds = 2.0");
    let config = parse(&text).unwrap();
    let run = RunDir::create(&dir.path().join("runs"), "shared", &config.to_toml()).unwrap();
    let url = archive
        .clone()
        .unwrap_or(ArchiveUrl::Sqlite(run.root.join(ARCHIVE_FILE)));
    let worker = |index: u32| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_audionas"));
        command
            .args(["search-worker", "--run"])
            .arg(&run.root)
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(["--index", &index.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(a) = &archive {
            command.arg("--archive").arg(a.to_arg());
        }
        command.spawn().unwrap()
    };
    let mut doomed = worker(0);
    // Kill worker 0 once it is training a trial.
    let started = Instant::now();
    let doomed_trial = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "worker 0 never started a trial"
        );
        std::thread::sleep(Duration::from_millis(100));
        if !url_exists(&url) {
            continue;
        }
        let Ok(mut archive) = open_archive(&url, &search_id(&config)) else {
            continue;
        };
        let running = archive
            .trials()
            .unwrap()
            .into_iter()
            .find(|t| t.state == TrialState::Running);
        if let Some(t) = running {
            break t.id;
        }
    };
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let survivor = worker(1).wait_with_output().unwrap();
    assert!(survivor.status.success());
    let trials = open_archive(&url, &search_id(&config))
        .unwrap()
        .trials()
        .unwrap();
    assert_eq!(trials.len(), 5, "the search reached max_trials");
    let killed = trials.iter().find(|t| t.id == doomed_trial).unwrap();
    assert_eq!(killed.state, TrialState::Failed);
    assert!(killed.error.as_ref().unwrap().contains("heartbeats"));
    assert!(trials.iter().all(|t| t.state != TrialState::Running));
    let completed = trials
        .iter()
        .filter(|t| t.state == TrialState::Completed)
        .count();
    assert!(completed >= 4, "{trials:#?}");
}

#[test]
fn two_worker_processes_share_one_sqlite_archive_and_survive_one_killed_mid_trial() {
    check_two_workers(None);
}

#[test]
fn two_worker_processes_share_one_postgres_archive_and_survive_one_killed_mid_trial() {
    check_two_workers(Some(fresh_postgres("workers")));
}

fn url_exists(url: &ArchiveUrl) -> bool {
    match url {
        ArchiveUrl::Sqlite(p) => p.exists(),
        ArchiveUrl::Postgres(_) => true,
    }
}

#[test]
fn bad_model_search_configs_are_refused_naming_the_key() {
    let cases = [
        (
            "blocks = [\"conv_3x3\", \"warp_drive\"]",
            "unknown block \"warp_drive\"",
        ),
        ("blocks = []", "[search] blocks is empty"),
        (
            "minimum_depth = 4\nmaximum_depth = 2",
            "minimum_depth = 4 is above maximum_depth = 2",
        ),
        ("beam_size = 0", "beam_size"),
        ("increase_probability = 1.5", "increase_probability"),
        ("lr = [0.1, 0.01]", "[search] lr"),
        ("suggested = [[]]", "suggested[0]"),
        ("stale_after_seconds = 1.0", "stale_after_seconds"),
        ("depth_step_trials = 0", "depth_step_trials"),
        ("warp = 9", "unknown field `warp`"),
    ];
    for (extra, expected) in cases {
        // The tiny search without the keys that `extra` sets.
        let keys: Vec<&str> = extra.lines().filter_map(|l| l.split(" =").next()).collect();
        let full = tiny_search(3, "");
        let base: Vec<&str> = full
            .lines()
            .filter(|l| !keys.iter().any(|k| l.starts_with(&format!("{k} ="))))
            .collect();
        let error = parse(&format!("{}\n{extra}\n", base.join("\n"))).unwrap_err();
        assert!(error.contains(expected), "{extra}: {error}");
    }
    // The complex STFT, which real blocks cannot take.
    let full = tiny_search(3, "");
    let features = common::TINY_CONFIG.split("[train]").next().unwrap();
    let stft = "[features]\nkind = \"stft\"\nsample_rate = 16000\nclip_ms = 1000.0\nwindow_ms = 16.0\nhop_ms = 32.0\nn_fft = 256\nwindow = \"hann\"\n";
    let error = parse(&full.replacen(features, stft, 1)).unwrap_err();
    assert!(
        error.contains("[features]") && error.contains("stft"),
        "{error}"
    );
    // A budget no tower fits is refused before any trial, naming the key.
    let config = parse(&tiny_search(3, "max_params = 5")).unwrap();
    let error = config.check_budget(4).unwrap_err();
    assert!(error.contains("[search] max_params"), "{error}");
    assert!(parse(&tiny_search(3, "max_params = 100000"))
        .unwrap()
        .check_budget(4)
        .is_ok());
}

#[test]
fn the_shipped_model_search_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/search");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if strategy_of(&text).as_deref() == Some("model-search") {
            ModelSearchConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 1, "no Model Search config in {}", dir.display());
}

#[test]
fn learned_ensemble_weights_favour_the_replica_that_is_right() {
    use audionas::search::ensemble::learn_weights;
    use audionas::train::session::Predictions;
    let mut rng = Rng::new(4);
    let labels: Vec<u32> = (0..200).map(|_| rng.below(3) as u32).collect();
    let good: Vec<f32> = labels
        .iter()
        .flat_map(|&l| (0..3).map(move |c| if c == l { 2.0 } else { 0.0 }))
        .collect();
    let noise: Vec<f32> = (0..600).map(|_| 3.0 * rng.normal()).collect();
    let replicas = [
        Predictions {
            classes: 3,
            logits: noise,
            labels: labels.clone(),
        },
        Predictions {
            classes: 3,
            logits: good,
            labels,
        },
    ];
    let w = learn_weights(&replicas);
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{w:?}");
    assert!(w.iter().all(|&x| x >= 0.0));
    assert!(w[1] > 0.9, "{w:?}");
}

#[test]
fn an_ensemble_model_outputs_the_weighted_average_of_its_replicas() {
    use audionas::data::dataset::Split;
    use audionas::search::ensemble::{combine_logits, make_ensemble, Combine, EnsembleOptions};
    use audionas::train::model_file::load_model;
    use audionas::train::session::{predict, Data};
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 6);
    let mut experiment = Experiment::parse(common::TINY_CONFIG, Path::new("tiny.toml")).unwrap();
    experiment.train.epochs = 1;
    let run = RunDir::create(&dir.path().join("runs"), "ens", &experiment.to_toml()).unwrap();
    let options = EnsembleOptions {
        data_dir: dir.path().join("data"),
        prepare: prepare(dir.path()),
        replicas: 3,
        combine: Combine::Weighted,
        verbose: false,
    };
    let gpu = Gpu::shared();
    let summary = make_ensemble(gpu, &experiment, &run, &options).unwrap();
    assert_eq!(summary.replicas.len(), 3);
    let seeds: std::collections::BTreeSet<u64> = summary.replicas.iter().map(|r| r.seed).collect();
    assert_eq!(seeds.len(), 3, "replicas share a seed");
    assert!((summary.weights.iter().sum::<f64>() - 1.0).abs() < 1e-6);

    // The saved ensemble, run as any model, equals the weighted average of
    // the replicas' logits.
    let data = Data::open(&dir.path().join("data"), &experiment, &prepare(dir.path())).unwrap();
    let loader = data.loader(&experiment, Split::Test, 8).unwrap();
    let mut replicas = Vec::new();
    for i in 0..3 {
        let path = run.root.join("replicas").join(i.to_string());
        let (mut net, _, _) = load_model(gpu, &path, None).unwrap();
        replicas.push(predict(gpu, &mut net, loader.epoch(0)).unwrap());
    }
    let (mut ensemble, info, _) = load_model(gpu, &run.root, None).unwrap();
    assert_eq!(
        info.architecture.layers.last().unwrap().op.name(),
        "weighted_sum"
    );
    let got = predict(gpu, &mut ensemble, loader.epoch(0)).unwrap();
    let want = combine_logits(&replicas, &summary.weights);
    assert_eq!(got.logits.len(), want.logits.len());
    for (g, w) in got.logits.iter().zip(&want.logits) {
        assert!((g - w).abs() <= 1e-4 + 1e-4 * w.abs(), "{g} vs {w}");
    }
    assert_eq!(
        summary.params,
        3 * summary_params_of_one(&experiment, &data)
    );
}

fn summary_params_of_one(experiment: &Experiment, data: &audionas::train::session::Data) -> u64 {
    Network::build(
        Gpu::shared(),
        &experiment.model,
        &data.prepared.clip_shape,
        data.classes().len(),
        0,
    )
    .unwrap()
    .parameter_count()
}

#[test]
fn the_pareto_front_keeps_the_trials_nothing_beats_on_both_counts() {
    let points = [
        (1, 100, 0.5),
        (2, 50, 0.4),
        (3, 200, 0.45),
        (4, 300, 0.9),
        (5, 50, 0.3),
        (6, 120, 0.5),
    ];
    let ids: Vec<i64> = pareto_front(&points).iter().map(|p| p.0).collect();
    assert_eq!(ids, [2, 1, 4]);
}

#[test]
fn the_command_line_runs_a_search_with_two_workers_reports_it_and_ensembles_its_best() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 12);
    let config = dir.path().join("ms.toml");
    std::fs::write(&config, tiny_search(4, "")).unwrap();
    let audionas = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_audionas"))
            .args(args)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "audionas {args:?}: {text}");
        text
    };
    let out = audionas(&[
        "search",
        "--config",
        "ms.toml",
        "--data",
        "data",
        "--name",
        "ms",
        "--workers",
        "2",
    ]);
    assert!(out.contains("worker 1: process"), "{out}");
    assert!(out.contains("4 trials (4 completed, 0 failed)"), "{out}");
    assert!(dir.path().join("runs/ms/architecture.json").is_file());
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/ms/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(results["strategy"], "model-search");
    assert_eq!(results["trials"], 4);
    let workers: std::collections::BTreeSet<String> =
        std::fs::read_to_string(dir.path().join("runs/ms/trials.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["worker"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");

    let status = Command::new(env!("CARGO_BIN_EXE_audionas"))
        .args(["search-status", "--run", "runs/ms"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("4 trials of 4: 4 completed, 0 running, 0 failed"),
        "{status}"
    );
    assert!(status.contains("best:"), "{status}");

    // More trials for the same search: resumed with a higher limit.
    let out = audionas(&[
        "search",
        "--resume",
        "--name",
        "ms",
        "--data",
        "data",
        "--max-trials",
        "5",
    ]);
    assert!(out.contains("5 trials (5 completed, 0 failed)"), "{out}");

    let out = audionas(&[
        "ensemble",
        "--run",
        "runs/ms",
        "--replicas",
        "2",
        "--data",
        "data",
        "--epochs",
        "1",
    ]);
    assert!(out.contains("replica 1 (seed"), "{out}");
    assert!(dir
        .path()
        .join("runs/ms_ensemble/model.safetensors")
        .is_file());
    let out = audionas(&["eval", "--model", "runs/ms_ensemble", "--data", "data"]);
    assert!(out.to_lowercase().contains("accuracy"), "{out}");
}

#[test]
fn a_diverging_trial_is_recorded_as_failed_and_the_search_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    common::write_tone_data(&dir.path().join("data"), 5);
    let extra = "lr = 1e30\nsuggested = [[\"conv_3x3\"], [\"separable_3x3\", \"dense_64\"]]";
    let config = parse(&tiny_search(2, extra)).unwrap();
    let run = RunDir::create(&dir.path().join("runs"), "nan", &config.to_toml()).unwrap();
    let options = in_process_worker(dir.path(), &run);
    let report = run_worker(Gpu::shared(), &config, &run.root, &options).unwrap();
    let trials = open_archive(&options.archive, &search_id(&config))
        .unwrap()
        .trials()
        .unwrap();
    assert_eq!((report.completed, report.failed), (0, 2), "{trials:#?}");
    for t in &trials {
        assert_eq!(t.state, TrialState::Failed);
        let error = t.error.as_deref().unwrap();
        assert!(error.contains("NaN"), "{error}");
    }
    let summary = summarise(&run.root, "coordinate-descent", &trials).unwrap();
    assert!(summary.best.is_none() && summary.architecture.is_none());
}
