//! A tiny sweep writes its CSV, markdown table and chart; every trial's
//! account closes.

use buffer_demo::Mode;
use buffer_demo::sweep::{SinkSetup, SweepConfig, sweep};

#[test]
fn tiny_sweep_writes_table_and_chart() {
    let cfg = SweepConfig {
        setups: vec![
            SinkSetup::plain(Mode::Inline, Some(8 * 1024), 1),
            SinkSetup::plain(Mode::Split, Some(4 << 20), 32),
            SinkSetup {
                gro: true,
                receivers: 2,
                threads: 2,
                gso: 8,
                ..SinkSetup::default()
            },
        ],
        secs: 0.05,
        grid: vec![20_000.0, 60_000.0],
        search: true,
        max_trials: 4,
        ..SweepConfig::full(0.0)
    };
    let mut seen = 0;
    let table = sweep(&cfg, |_| seen += 1).unwrap();
    assert_eq!(seen, table.trials.len());
    assert_eq!(table.maxima.len(), 3);
    for t in &table.trials {
        assert_eq!(t.residual, Some(0), "{t:?}");
        assert_eq!(t.sent, t.delivered + t.queue_dropped + t.kernel_dropped);
    }
    let md = table.to_markdown();
    assert!(md.contains("| split rcvbuf=4M batch=32 |"), "{md}");
    assert!(
        md.contains("| split rcvbuf=4M batch=32 gro rx=2 + tx=2 gso=8 |"),
        "{md}"
    );
    assert!(md.contains("drops at 20k/s"), "{md}");
    let dir = std::env::temp_dir().join(format!("buffer-demo-sweep-{}", std::process::id()));
    table.write_outputs(&dir).unwrap();
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), table.trials.len() + 1);
    assert!(
        std::fs::read_to_string(dir.join("drops.svg"))
            .unwrap()
            .contains("<svg")
    );
    let png = std::fs::read(dir.join("drops.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::remove_dir_all(&dir).unwrap();
}
