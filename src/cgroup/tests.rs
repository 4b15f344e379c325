//! The detection and the per-attempt steps on fake inputs (texts, and directories in a
//! temporary directory holding the files the kernel would show), and once on the real
//! kernel where a cgroup v2 with `cgroup.kill` can be used.

use std::fs;
use std::path::Path;

use super::*;

/// This machine's kind: cgroup v1 with cgroup2 beside it, at /sys/fs/cgroup/unified.
const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// A pure cgroup v2 host (optional fields before the dash), and a bind mount of a
/// subtree with a space in its mount point.
const PURE: &str = "\
22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
90 23 0:26 /user.slice /mnt/my\\040cg rw shared:4 master:1 - cgroup2 cgroup2 rw
";

#[test]
fn the_setting_is_auto_off_or_a_directory() {
    assert_eq!(Setting::parse(None), Ok(Setting::Auto));
    assert_eq!(Setting::parse(Some("")), Ok(Setting::Auto));
    assert_eq!(Setting::parse(Some("auto")), Ok(Setting::Auto));
    assert_eq!(Setting::parse(Some("off")), Ok(Setting::Off));
    assert_eq!(
        Setting::parse(Some("/sys/fs/cgroup/unified")),
        Ok(Setting::Dir("/sys/fs/cgroup/unified".into()))
    );
    let e = Setting::parse(Some("sys/fs/cgroup")).unwrap_err();
    assert!(e.contains("expected off, auto or an absolute"), "{e}");
}

#[test]
fn cgroup2_mounts_are_found_in_mountinfo() {
    assert_eq!(
        cgroup2_mounts(HYBRID),
        vec![Mount {
            root: "/".into(),
            point: "/sys/fs/cgroup/unified".into()
        }]
    );
    assert_eq!(
        cgroup2_mounts(PURE),
        vec![
            Mount {
                root: "/".into(),
                point: "/sys/fs/cgroup".into()
            },
            Mount {
                root: "/user.slice".into(),
                point: "/mnt/my cg".into()
            },
        ]
    );
    assert!(cgroup2_mounts("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n").is_empty());
    assert!(cgroup2_mounts("garbage\n\n- cgroup2\n").is_empty());
}

#[test]
fn our_cgroup_is_the_0_line_of_proc_self_cgroup() {
    let hybrid = "9:name=systemd:/\n4:memory:/x\n0::/\n";
    assert_eq!(own_cgroup(hybrid).as_deref(), Some("/"));
    let pure = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/vte.scope\n";
    assert_eq!(
        own_cgroup(pure).as_deref(),
        Some("/user.slice/user-1000.slice/user@1000.service/app.slice/vte.scope")
    );
    assert_eq!(own_cgroup("4:memory:/x\n1:cpu:/\n"), None, "v1 only");
    assert_eq!(own_cgroup("0::/gone (deleted)\n"), None);
}

#[test]
fn our_directory_is_under_the_mount_that_shows_most_of_it() {
    let mounts = cgroup2_mounts(PURE);
    assert_eq!(
        own_dir(&mounts, "/system.slice/x.service"),
        Some("/sys/fs/cgroup/system.slice/x.service".into())
    );
    // Both mounts show it: the one rooted deeper is taken.
    assert_eq!(
        own_dir(&mounts, "/user.slice/u.scope"),
        Some("/mnt/my cg/u.scope".into())
    );
    assert_eq!(own_dir(&mounts, "/"), Some("/sys/fs/cgroup".into()));
    // Outside our namespace, or a mount that shows only another subtree.
    assert_eq!(own_dir(&mounts, "/../../x"), None);
    let only_user = &mounts[1..];
    assert_eq!(own_dir(only_user, "/user.slicex/a"), None);
    assert_eq!(own_dir(only_user, "/system.slice"), None);
    assert_eq!(own_dir(only_user, "/user.slice"), Some("/mnt/my cg".into()));
}

/// A fake cgroup2 mount at `root`: its mountinfo line.
fn fake_mount(root: &Path) -> String {
    format!("41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n", root.display())
}

#[test]
fn the_base_is_our_own_cgroup_or_the_forced_one_when_it_is_cgroup_v2() {
    let t = tempfile::tempdir().unwrap();
    let own = t.path().join("a/b");
    fs::create_dir_all(&own).unwrap();
    let mi = fake_mount(t.path());
    // No cgroup.controllers: not cgroup v2.
    let e = base_dir(&Setting::Auto, &mi, "0::/a/b\n").unwrap_err();
    assert!(e.contains("not a cgroup v2 directory"), "{e}");
    fs::write(own.join("cgroup.controllers"), "memory pids\n").unwrap();
    assert_eq!(base_dir(&Setting::Auto, &mi, "0::/a/b\n"), Ok(own.clone()));

    let e = base_dir(&Setting::Auto, HYBRID.split('\n').next().unwrap(), "0::/\n").unwrap_err();
    assert_eq!(e, "no cgroup v2 hierarchy is mounted");
    let e = base_dir(&Setting::Auto, &mi, "4:memory:/x\n").unwrap_err();
    assert!(e.contains("no 0:: line"), "{e}");
    assert_eq!(
        base_dir(&Setting::Off, &mi, "0::/a/b\n"),
        Err("MAESTRO_CGROUP=off".into())
    );
    // Forced: whatever we are in.
    assert_eq!(
        base_dir(&Setting::Dir(own.clone()), "", ""),
        Ok(own.clone())
    );
    let e = base_dir(&Setting::Dir(t.path().into()), "", "").unwrap_err();
    assert!(e.contains("not a cgroup v2 directory"), "{e}");

    // Not ours to write (root may write anything, so only checked as another user).
    if !nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&own, fs::Permissions::from_mode(0o555)).unwrap();
        let e = base_dir(&Setting::Auto, &mi, "0::/a/b\n").unwrap_err();
        assert!(e.contains("not writable"), "{e}");
        fs::set_permissions(&own, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn names_and_kernel_files_are_read_as_the_kernel_writes_them() {
    assert_eq!(
        tree_name("s-20260101-000000-1", "w1", 42),
        "maestro-s-20260101-000000-1-w1-42"
    );
    assert_eq!(leaf_name("build", 3), "attempt-3-build");
    assert_eq!(leaf_name("a+cleanup", 1), "attempt-1-a+cleanup");
    assert!(lists("cpuset cpu io memory pids\n", "memory"));
    assert!(!lists("hugetlb\n", "memory"));
    assert!(!lists("memoryx\n", "memory"));
    let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 1\n";
    assert_eq!(oom_kills_in(events), 1);
    assert_eq!(oom_kills_in("low 0\n"), 0);
}

/// The files the kernel shows in a new cgroup directory.
fn fake_cgroup(dir: &Path, controllers: &str) {
    fs::create_dir_all(dir).unwrap();
    for f in ["cgroup.kill", "cgroup.procs", "cgroup.subtree_control"] {
        fs::write(dir.join(f), "").unwrap();
    }
    fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
}

#[test]
fn a_tree_enables_memory_for_its_leaves_only_where_its_parent_offers_it() {
    let t = tempfile::tempdir().unwrap();
    let with = t.path().join("with");
    fake_cgroup(&with, "cpu memory pids\n");
    let tree = Tree::open(with.clone()).unwrap();
    assert!(tree.memory());
    assert_eq!(
        fs::read_to_string(with.join("cgroup.subtree_control")).unwrap(),
        "+memory"
    );
    assert!(
        tree.describe().contains("memory.max enforces"),
        "{}",
        tree.describe()
    );
    // Removing a fake tree fails (its files are real files); the real one is tested below.
    std::mem::forget(tree);

    let without = t.path().join("without");
    fake_cgroup(&without, "hugetlb\n");
    let tree = Tree::open(without.clone()).unwrap();
    assert!(!tree.memory());
    assert_eq!(
        fs::read_to_string(without.join("cgroup.subtree_control")).unwrap(),
        ""
    );
    assert!(
        tree.describe().contains("measured by PSS"),
        "{}",
        tree.describe()
    );
    std::mem::forget(tree);

    // No cgroup.kill (Linux < 5.14): not used.
    fs::remove_file(without.join("cgroup.kill")).unwrap();
    let e = Tree::open(without).unwrap_err();
    assert!(e.contains("no cgroup.kill"), "{e}");
}

#[test]
fn a_base_that_is_no_cgroup_gives_no_tree_and_keeps_nothing() {
    let t = tempfile::tempdir().unwrap();
    // mkdir here makes a plain directory: no cgroup.kill in it.
    let e = Tree::create(t.path(), "maestro-s-w1-1").unwrap_err();
    assert!(e.contains("no cgroup.kill"), "{e}");
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    let e = Tree::create(&t.path().join("missing"), "maestro-s-w1-1").unwrap_err();
    assert!(e.starts_with("cannot make cgroup"), "{e}");
}

#[test]
fn a_leaf_gets_memory_max_when_the_tree_has_memory_and_the_task_a_limit() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("attempt-1-a");
    fake_cgroup(&dir, "memory\n");
    for f in ["memory.max", "memory.swap.max", "memory.oom.group"] {
        fs::write(dir.join(f), "max\n").unwrap();
    }
    let leaf = Leaf::prepare(dir.clone(), true, Some(64 << 20)).unwrap();
    assert!(leaf.enforces_memory());
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(read("memory.max"), "67108864");
    assert_eq!(read("memory.swap.max"), "0");
    assert_eq!(read("memory.oom.group"), "1");
    // What the worker does with it: move the task in, kill, count OOM kills.
    leaf.adopt(4242).unwrap();
    assert_eq!(read("cgroup.procs"), "4242");
    leaf.kill().unwrap();
    assert_eq!(read("cgroup.kill"), "1");
    assert_eq!(leaf.oom_kills(), 0, "no memory.events yet");
    fs::write(dir.join("memory.events"), "max 3\noom 1\noom_kill 1\n").unwrap();
    assert_eq!(leaf.oom_kills(), 1);
    std::mem::forget(leaf);

    // No limit, or no controller: nothing written, the worker measures.
    fs::write(dir.join("memory.max"), "max\n").unwrap();
    for (memory, limit) in [(true, None), (false, Some(1))] {
        let leaf = Leaf::prepare(dir.clone(), memory, limit).unwrap();
        assert!(!leaf.enforces_memory());
        assert_eq!(read("memory.max"), "max\n");
        std::mem::forget(leaf);
    }
    // A limit that cannot be set: no cgroup for the attempt (the worker falls back).
    fs::remove_file(dir.join("memory.max")).unwrap();
    let e = Leaf::prepare(dir.clone(), true, Some(1)).unwrap_err();
    assert!(e.contains("memory.max"), "{e}");
    let e = Leaf {
        dir: t.path().join("gone"),
        memory_max: false,
    }
    .adopt(1)
    .unwrap_err();
    assert!(e.contains("gone/cgroup.procs"), "{e}");
}

#[test]
fn empty_directories_of_dead_workers_are_swept() {
    let t = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let ours = std::process::id();
    let stale = t.path().join(format!("maestro-s-w1-{dead}"));
    fs::create_dir_all(stale.join("attempt-1-a")).unwrap();
    let busy = t.path().join(format!("maestro-s-w2-{dead}"));
    fs::create_dir_all(busy.join("attempt-1-b")).unwrap();
    // A cgroup with a process cannot be removed; a file stands in for one.
    fs::write(busy.join("attempt-1-b/cgroup.procs"), "1\n").unwrap();
    let live = t.path().join(format!("maestro-s-w3-{ours}"));
    fs::create_dir_all(live.join("attempt-1-c")).unwrap();
    let other = t.path().join("system.slice");
    fs::create_dir(&other).unwrap();
    sweep_stale(t.path());
    assert!(!stale.exists());
    assert!(busy.join("attempt-1-b").exists());
    assert!(live.join("attempt-1-c").exists());
    assert!(other.exists());
}

/// On the real kernel, where this process may make cgroups (`$MAESTRO_CGROUP`, else its
/// own cgroup): a process moved into a leaf is killed by `cgroup.kill`, and nothing is
/// left. Elsewhere it says why on stderr and checks that the detection said so.
#[test]
fn on_the_real_kernel_a_leaf_kills_its_processes_and_nothing_is_left() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let setting = Setting::from_env().unwrap_or(Setting::Auto);
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let base = base_dir(
        &setting,
        &read("/proc/self/mountinfo"),
        &read("/proc/self/cgroup"),
    );
    let name = tree_name("unit-test", "real", std::process::id());
    let tree = match base.clone().and_then(|b| Tree::create(&b, &name)) {
        Ok(t) => t,
        Err(why) => {
            eprintln!(
                "cgroup v2 with cgroup.kill cannot be used here ({why}): checked the fallback only"
            );
            if let Ok(b) = base {
                assert!(!b.join(&name).exists());
            }
            return;
        }
    };
    let base = base.unwrap();
    let leaf = tree.attempt("t", 1, Some(256 << 20)).unwrap();
    assert!(leaf.dir().starts_with(base.join(&name)));
    let mut child = std::process::Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .unwrap();
    leaf.adopt(child.id()).unwrap();
    assert_eq!(procs(leaf.dir()), vec![child.id()]);
    let cg = fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    assert!(cg.contains(&format!("/{name}/attempt-1-t")), "{cg}");
    leaf.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    assert_eq!(tree.memory(), leaf.enforces_memory());
    leaf.remove().unwrap();
    assert!(!base.join(&name).join("attempt-1-t").exists());
    // A leaf left behind goes with the tree, and so do cgroups made below it (by a
    // maestro the attempt ran).
    let left = tree.attempt("u", 2, None).unwrap();
    fs::create_dir_all(left.dir().join("maestro-inner-w1-1/attempt-1-v")).unwrap();
    std::mem::forget(left);
    tree.remove().unwrap();
    assert!(!base.join(&name).exists());
}
