//! The manifest directory source against real directories.

use sluice_model::{ObjectKind, Origin, Severity};
use sluice_source::{ManifestSource, SourceUpdate};
use sluice_store::NamespacedName;
use std::fs;
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, text).unwrap();
}

fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: {port}\n"
    )
}

fn key(name: &str) -> NamespacedName {
    NamespacedName::new("default", name)
}

fn origin_of_service(update: &SourceUpdate, name: &str) -> Option<String> {
    update
        .store
        .services
        .get(&key(name))
        .map(|s| s.origin.to_string())
}

fn port_of_service(update: &SourceUpdate, name: &str) -> Option<i32> {
    let stored = update.store.services.get(&key(name))?;
    Some(stored.object.ports.first()?.port)
}

fn shown(update: &SourceUpdate) -> Vec<String> {
    update.problems.iter().map(ToString::to_string).collect()
}

#[test]
fn multi_document_yaml_lists_and_json_are_read_with_their_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "a.yaml",
        "# two documents\n\napiVersion: v1\nkind: Service\nmetadata:\n  name: one\n---\n# second\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n  namespace: shop\nspec: {}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ignored\n",
    );
    write(
        dir,
        "sub/list.yml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: two\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: options\n  data:\n    k: v\n",
    );
    write(
        dir,
        "c.json",
        "\n{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {\"name\": \"tls\"},\n \"stringData\": {\"tls.crt\": \"x\"}}\n",
    );
    write(dir, "notes.txt", "not a manifest: ---\n");
    write(dir, ".hidden.yaml", &service("hidden", 1));

    let source = ManifestSource::load(dir).unwrap();
    let update = source.update();
    assert!(update.problems.is_empty(), "{:?}", shown(&update));
    let root = dir.display();
    assert_eq!(
        origin_of_service(&update, "one").unwrap(),
        format!("{root}/a.yaml:3")
    );
    let ingress = &update.store.ingresses[&NamespacedName::new("shop", "web")];
    assert_eq!(ingress.origin.to_string(), format!("{root}/a.yaml:9"));
    assert_eq!(
        origin_of_service(&update, "two").unwrap(),
        format!("{root}/sub/list.yml:4")
    );
    let options = &update.store.config_maps[&key("options")];
    assert_eq!(options.origin.to_string(), format!("{root}/sub/list.yml:8"));
    let secret = &update.store.secrets[&key("tls")];
    assert_eq!(secret.origin.to_string(), format!("{root}/c.json:2"));
    assert!(secret.object.string_data.is_some());
    assert_eq!(update.store.services.len(), 2, "hidden files are not read");
    assert!(!update.store.services.contains_key(&key("hidden")));
}

#[test]
fn paths_are_shown_as_the_directory_was_given() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "x/a.yaml", &service("one", 80));
    let relative = format!(
        "{}/./x",
        tmp.path().display().to_string().trim_end_matches('/')
    );
    let source = ManifestSource::load(&relative).unwrap();
    let Origin::File { path, line } = &source.update().store.services[&key("one")].origin else {
        panic!("not from a file");
    };
    assert_eq!(&**path, format!("{relative}/a.yaml"));
    assert_eq!(*line, 1);
}

#[test]
fn loading_a_missing_directory_fails() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(ManifestSource::load(tmp.path().join("nope")).is_err());
}

fn load(dir: &Path) -> SourceUpdate {
    ManifestSource::load(dir).unwrap().update()
}

async fn next_update(
    rx: &mut watch::Receiver<SourceUpdate>,
    what: &str,
    done: impl Fn(&SourceUpdate) -> bool,
) -> SourceUpdate {
    let wait = async {
        loop {
            {
                let current = rx.borrow_and_update();
                if done(&current) {
                    return current.clone();
                }
            }
            rx.changed().await.expect("the source stopped");
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), wait).await {
        Ok(update) => update,
        Err(_) => panic!(
            "within 10 s: {what}; last update had services {:?} and problems {:?}",
            rx.borrow().store.services.keys().collect::<Vec<_>>(),
            shown(&rx.borrow())
        ),
    }
}

/// Starts watching and returns once the watch is live, so that what a test changes next is
/// seen through the watch (the first read happens right after the watch is put on).
async fn start(dir: &Path) -> (watch::Receiver<SourceUpdate>, tokio::task::JoinHandle<()>) {
    let source = ManifestSource::load(dir).unwrap();
    let (tx, mut rx) = watch::channel(source.update());
    let task = tokio::spawn(source.watch(tx));
    write(
        dir,
        "zz-live.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: live\n",
    );
    next_update(&mut rx, "the watch goes live", |u| {
        u.store.config_maps.contains_key(&key("live"))
    })
    .await;
    (rx, task)
}

#[tokio::test]
async fn watch_picks_up_new_changed_and_deleted_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.yaml", &service("a", 80));
    let (mut rx, task) = start(dir).await;
    assert_eq!(port_of_service(&rx.borrow(), "a"), Some(80));

    write(dir, "nested/b.yaml", &service("b", 81));
    next_update(&mut rx, "new file b.yaml is read", |u| {
        port_of_service(u, "b") == Some(81)
    })
    .await;

    let before = rx.borrow().store.revisions();
    write(dir, "a.yaml", &service("a", 8080));
    let update = next_update(&mut rx, "changed a.yaml is read", |u| {
        port_of_service(u, "a") == Some(8080)
    })
    .await;
    let after = update.store.revisions();
    assert!(after.service > before.service);
    assert_eq!(after.ingress, before.ingress, "only changed kinds move");

    fs::remove_file(dir.join("a.yaml")).unwrap();
    let update = next_update(&mut rx, "deleted a.yaml drops its objects", |u| {
        !u.store.services.contains_key(&key("a"))
    })
    .await;
    assert_eq!(port_of_service(&update, "b"), Some(81));

    drop(rx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("watch ends when the receiver is dropped")
        .unwrap();
}

#[tokio::test]
async fn a_typo_keeps_the_old_objects_until_the_file_is_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "app.yaml",
        &format!("{}---\n{}", service("a", 80), service("b", 81)),
    );
    let (mut rx, _task) = start(dir).await;
    assert!(rx.borrow().problems.is_empty());
    let root = dir.display().to_string();

    // Line 15 is `  - port: [81` in the second document (which starts at the `---` on
    // line 8): an unclosed flow sequence.
    write(
        dir,
        "app.yaml",
        &format!(
            "{}---\n{}",
            service("a", 90),
            service("b", 81).replace("port: 81", "port: [81")
        ),
    );
    let update = next_update(&mut rx, "the broken file is reported", |u| {
        !u.problems.is_empty()
    })
    .await;
    assert_eq!(update.problems.len(), 1, "{:?}", shown(&update));
    let problem = &update.problems[0];
    assert_eq!(problem.severity, Severity::Rejected);
    assert!(
        matches!(&problem.origin, Some(Origin::File { path, line }) if **path == format!("{root}/app.yaml") && *line == 15),
        "{problem}"
    );
    assert!(problem.reason.contains("not valid YAML"), "{problem}");
    assert_eq!(
        port_of_service(&update, "a"),
        Some(80),
        "the old objects stay exactly as they were"
    );
    assert_eq!(port_of_service(&update, "b"), Some(81));

    write(
        dir,
        "app.yaml",
        &format!("{}---\n{}", service("a", 90), service("c", 82)),
    );
    let update = next_update(&mut rx, "the fixed file replaces its objects", |u| {
        u.problems.is_empty()
    })
    .await;
    assert_eq!(port_of_service(&update, "a"), Some(90));
    assert_eq!(port_of_service(&update, "b"), None);
    assert_eq!(port_of_service(&update, "c"), Some(82));
    assert_eq!(
        origin_of_service(&update, "c").unwrap(),
        format!("{root}/app.yaml:9")
    );
}

#[tokio::test]
async fn an_invalid_object_is_named_and_keeps_the_old_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "svc.yaml", &service("a", 80));
    let (mut rx, _task) = start(dir).await;
    write(
        dir,
        "svc.yaml",
        &format!(
            "# now broken\n{}",
            service("a", 80).replace("- port: 80", "- port: eighty")
        ),
    );
    let update = next_update(&mut rx, "the invalid Service is reported", |u| {
        !u.problems.is_empty()
    })
    .await;
    let problem = &update.problems[0];
    let object = problem.object.as_ref().expect("the object is named");
    assert_eq!(object.kind, ObjectKind::Service);
    assert_eq!(object.name, "a");
    assert!(
        problem
            .to_string()
            .contains("svc.yaml:8: Service default/a rejected"),
        "{problem}"
    );
    assert_eq!(port_of_service(&update, "a"), Some(80));
}

#[test]
fn a_new_file_with_one_bad_document_still_serves_the_good_ones() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "mixed.yaml",
        &format!("{}---\nkind: [\n", service("good", 80)),
    );
    let update = load(tmp.path());
    assert_eq!(port_of_service(&update, "good"), Some(80));
    assert_eq!(update.problems.len(), 1, "{:?}", shown(&update));
    assert!(
        shown(&update)[0].contains("mixed.yaml:"),
        "{:?}",
        shown(&update)
    );
}

#[test]
fn an_object_in_two_files_is_taken_from_the_later_path_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "10-first.yaml", &service("dup", 80));
    write(dir, "20-second.yaml", &format!("\n{}", service("dup", 81)));
    let update = load(dir);
    assert_eq!(port_of_service(&update, "dup"), Some(81));
    assert_eq!(update.problems.len(), 1, "{:?}", shown(&update));
    let warning = &update.problems[0];
    assert_eq!(warning.severity, Severity::Warning);
    let text = warning.to_string();
    let root = dir.display();
    assert!(
        text.starts_with(&format!(
            "{root}/20-second.yaml:2: Service default/dup warning"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("{root}/10-first.yaml:1")), "{text}");
}

#[tokio::test]
async fn removing_the_winning_duplicate_falls_back_to_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "1.yaml", &service("dup", 80));
    write(dir, "2.yaml", &service("dup", 81));
    let (mut rx, _task) = start(dir).await;
    assert_eq!(port_of_service(&rx.borrow(), "dup"), Some(81));
    fs::remove_file(dir.join("2.yaml")).unwrap();
    let update = next_update(&mut rx, "the remaining definition is used", |u| {
        port_of_service(u, "dup") == Some(80)
    })
    .await;
    assert!(update.problems.is_empty(), "{:?}", shown(&update));
}

/// kubelet's layout for a mounted ConfigMap: the data lives in a timestamped directory,
/// `..data` points at it, and each top-level file is a symlink through `..data`. An update
/// writes a new timestamped directory and swaps `..data` atomically (rename over it).
#[cfg(unix)]
#[tokio::test]
async fn a_kubelet_style_data_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "..2024_01_01_00_00_00.1/svc.yaml", &service("k", 80));
    symlink("..2024_01_01_00_00_00.1", dir.join("..data")).unwrap();
    symlink("..data/svc.yaml", dir.join("svc.yaml")).unwrap();

    let (mut rx, _task) = start(dir).await;
    {
        let update = rx.borrow();
        assert_eq!(port_of_service(&update, "k"), Some(80));
        assert!(update.problems.is_empty(), "{:?}", shown(&update));
        assert_eq!(
            origin_of_service(&update, "k").unwrap(),
            format!("{}/svc.yaml:1", dir.display()),
            "read through the top-level symlink, not the hidden directory"
        );
    }

    write(dir, "..2024_01_01_00_00_01.2/svc.yaml", &service("k", 81));
    symlink("..2024_01_01_00_00_01.2", dir.join("..data_tmp")).unwrap();
    fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    fs::remove_dir_all(dir.join("..2024_01_01_00_00_00.1")).unwrap();

    let update = next_update(&mut rx, "the swapped ..data is read", |u| {
        port_of_service(u, "k") == Some(81)
    })
    .await;
    assert!(update.problems.is_empty(), "{:?}", shown(&update));
    assert_eq!(update.store.services.len(), 1);
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_is_a_problem_not_a_panic() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "ok.yaml", &service("ok", 80));
    write(dir, "secret.yaml", &service("locked", 80));
    fs::set_permissions(dir.join("secret.yaml"), fs::Permissions::from_mode(0o000)).unwrap();
    let readable = fs::read(dir.join("secret.yaml")).is_ok();
    let update = load(dir);
    assert_eq!(port_of_service(&update, "ok"), Some(80));
    if readable {
        // Running as root: permissions do not stop reads, so there is nothing to report.
        assert!(update.problems.is_empty(), "{:?}", shown(&update));
    } else {
        assert_eq!(update.problems.len(), 1, "{:?}", shown(&update));
        assert!(shown(&update)[0].contains("cannot read the file"));
    }
}

#[cfg(unix)]
#[test]
fn dangling_symlinks_and_symlink_loops_are_survived() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "sub/a.yaml", &service("a", 80));
    symlink("missing.yaml", dir.join("dangling.yaml")).unwrap();
    symlink("..", dir.join("sub/loop")).unwrap();
    let update = load(dir);
    assert_eq!(port_of_service(&update, "a"), Some(80));
    assert!(update.problems.is_empty(), "{:?}", shown(&update));
}

#[test]
fn a_file_that_is_not_utf8_is_reported_on_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("bin.yaml"), b"a: 1\nb: \xff\n").unwrap();
    let update = load(tmp.path());
    assert_eq!(update.problems.len(), 1);
    assert!(
        shown(&update)[0].contains("bin.yaml:2: file rejected: not UTF-8"),
        "{:?}",
        shown(&update)
    );
}

#[tokio::test]
async fn a_vanished_directory_keeps_its_objects_and_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    write(&dir, "a.yaml", &service("a", 80));
    let (mut rx, _task) = start(&dir).await;
    let away = tmp.path().join("away");
    fs::rename(&dir, &away).unwrap();
    let update = next_update(&mut rx, "the missing directory is reported", |u| {
        !u.problems.is_empty()
    })
    .await;
    assert!(
        shown(&update)[0].contains("cannot read directory"),
        "{:?}",
        shown(&update)
    );
    assert_eq!(port_of_service(&update, "a"), Some(80));

    fs::rename(&away, &dir).unwrap();
    let update = next_update(&mut rx, "the directory is read again", |u| {
        u.problems.is_empty()
    })
    .await;
    assert_eq!(port_of_service(&update, "a"), Some(80));
}
