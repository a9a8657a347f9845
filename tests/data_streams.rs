//! Streams and the streaming metrics of TensorFlow's Speech Commands
//! streaming test, on hand-made cases.

use audionas::data::stream::{
    accuracy_stats, evaluate_stream, make_stream, truth_from_text, truth_to_text,
    RecognizeCommands, RecognizeConfig, StreamConfig, TruthEvent,
};

fn labels() -> Vec<String> {
    ["_silence_", "_unknown_", "yes", "no"]
        .map(String::from)
        .to_vec()
}

fn word(label: &str, time: i64) -> (String, i64) {
    (label.to_string(), time)
}

#[test]
fn defaults_are_the_streaming_tests() {
    let c = RecognizeConfig::default();
    assert_eq!(
        (
            c.clip_stride_ms,
            c.average_window_ms,
            c.time_tolerance_ms,
            c.suppression_ms,
            c.minimum_count
        ),
        (30, 500, 750, 1500, 3)
    );
    assert_eq!(c.detection_threshold, 0.7);
}

#[test]
fn correct_wrong_and_false_alarms_are_counted_like_tensorflow() {
    let truth = vec![
        word("yes", 1000),
        word("no", 3000),
        word("yes", 6000),
        word("no", 9000),
    ];
    let found = vec![
        word("yes", 1500), // correct: within 750 ms of the first word
        word("yes", 1600), // wrong: that word is already matched
        word("yes", 3200), // wrong label near "no"
        word("no", 4500),  // false alarm: 1500 ms after the nearest word
    ];
    let stats = accuracy_stats(&truth, &found, None, 750);
    assert_eq!(
        (
            stats.ground_truth,
            stats.correct,
            stats.wrong,
            stats.false_alarms
        ),
        (4, 1, 2, 1)
    );
    assert_eq!(stats.matched_percent(), 75.0);
    assert_eq!(stats.correct_percent(), 25.0);
    assert_eq!(stats.false_alarm_percent(), 25.0);
    // Only ground truth up to the given time (plus tolerance) counts.
    assert_eq!(
        accuracy_stats(&truth, &found, Some(2500), 750).ground_truth,
        2
    );
}

#[test]
fn recognizer_averages_thresholds_and_suppresses() {
    let mut recognizer = RecognizeCommands::new(labels(), RecognizeConfig::default());
    let yes = [0.0, 0.0, 1.0, 0.0];
    let no = [0.0, 0.0, 0.0, 1.0];
    // Too few results and too short a window: nothing yet.
    assert!(!recognizer.process(&yes, 0).unwrap().is_new_command);
    assert!(!recognizer.process(&yes, 30).unwrap().is_new_command);
    assert!(!recognizer.process(&yes, 60).unwrap().is_new_command);
    // 125 ms (a quarter of the window) and three results: "yes" is found once.
    let r = recognizer.process(&yes, 150).unwrap();
    assert!(r.is_new_command && r.label == "yes" && (r.score - 1.0).abs() < 1e-6);
    assert!(!recognizer.process(&yes, 180).unwrap().is_new_command);
    // "no" soon after is suppressed (1500 ms) even when it dominates.
    let mut t = 210;
    while t < 1500 {
        assert!(
            !recognizer.process(&no, t).unwrap().is_new_command,
            "{t} ms"
        );
        t += 30;
    }
    let mut found_no = None;
    while t < 2500 {
        if recognizer.process(&no, t).unwrap().is_new_command {
            found_no = Some(t);
            break;
        }
        t += 30;
    }
    assert!(found_no.is_some_and(|t| t > 150 + 1500), "{found_no:?}");
    // A weak average stays below the 0.7 threshold.
    let mut fresh = RecognizeCommands::new(labels(), RecognizeConfig::default());
    let weak = [0.2, 0.2, 0.6, 0.0];
    assert!((0..20).all(|i| !fresh.process(&weak, i * 30).unwrap().is_new_command));
    // Mistakes are errors, not panics.
    assert!(fresh.process(&[1.0], 700).unwrap_err().contains("1 scores"));
    assert!(fresh
        .process(&yes, 10)
        .unwrap_err()
        .contains("increasing time order"));
}

#[test]
fn a_stream_with_perfect_scores_is_all_correct() {
    let clips: Vec<(String, Vec<f32>)> = vec![
        ("yes".into(), vec![0.5; 8000]),
        ("no".into(), vec![-0.5; 8000]),
    ];
    let noise = vec![vec![0.01; 16000]];
    let config = StreamConfig {
        duration_s: 30.0,
        seed: 4,
        ..StreamConfig::default()
    };
    let stream = make_stream(&clips, &noise, &config);
    assert_eq!(stream.samples.len(), 30 * 16000);
    assert!(stream.truth.len() >= 10);
    assert_eq!(
        make_stream(&clips, &noise, &config).truth,
        stream.truth,
        "seeded"
    );
    for pair in stream.truth.windows(2) {
        assert!(pair[1].start_ms >= pair[0].end_ms, "words do not overlap");
    }
    // An oracle: the scores of each 30 ms window say the word under it.
    let recognize = RecognizeConfig::default();
    let windows = (stream.samples.len() as i64 * 1000 / 16000) / recognize.clip_stride_ms;
    let scores: Vec<Vec<f32>> = (0..windows)
        .map(|i| {
            let t = i * recognize.clip_stride_ms;
            let mut s = vec![1.0, 0.0, 0.0, 0.0];
            if let Some(w) = stream
                .truth
                .iter()
                .find(|w| (w.start_ms..w.end_ms).contains(&t))
            {
                s = vec![
                    0.0,
                    0.0,
                    (w.label == "yes") as u8 as f32,
                    (w.label == "no") as u8 as f32,
                ];
            }
            s
        })
        .collect();
    let (stats, found) = evaluate_stream(&labels(), &scores, &stream.truth, &recognize).unwrap();
    assert_eq!(stats.false_alarms, 0, "{stats}");
    assert_eq!(stats.wrong, 0, "{stats}");
    // A word repeated right after the same word is not a new command.
    assert!(
        stats.correct >= stream.truth.len() / 2,
        "{stats}, found {found:?}"
    );
}

#[test]
fn ground_truth_text_round_trips_and_bad_lines_are_named() {
    let truth = vec![
        TruthEvent {
            label: "yes".into(),
            start_ms: 1500,
            end_ms: 1500,
        },
        TruthEvent {
            label: "_unknown_".into(),
            start_ms: 0,
            end_ms: 0,
        },
    ];
    let text = truth_to_text(&truth);
    assert_eq!(truth_from_text(&text, "t.txt").unwrap(), truth);
    // Blank lines and spaces around fields are allowed.
    let loose = "\n yes , 1500 \n\n_unknown_,0\n";
    assert_eq!(truth_from_text(loose, "t.txt").unwrap(), truth);
    let err = truth_from_text("yes,100\nno 200\n", "t.txt").unwrap_err();
    assert!(
        err.starts_with("t.txt:2: expected `label,start_ms`"),
        "{err}"
    );
    let err = truth_from_text("yes,soon\n", "t.txt").unwrap_err();
    assert!(err.contains("t.txt:1: \"soon\" is not a time"), "{err}");
}
