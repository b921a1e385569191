//! Container ids and cgroup paths, from `/proc/<pid>/cgroup` and
//! `/proc/<pid>/mountinfo`.
//!
//! Container runtimes name a container's cgroup after its 64-hex-digit id:
//!
//! - docker: `/docker/<id>` (cgroupfs driver), `/system.slice/docker-<id>.scope`;
//! - containerd / CRI: `/kubepods/<qos>/pod<uid>/<id>`,
//!   `/kubepods.slice/.../cri-containerd-<id>.scope`;
//! - CRI-O: `crio-<id>.scope` (or `crio-<id>` with cgroupfs);
//! - podman: `libpod-<id>.scope`, possibly with a `/container` child.
//!
//! Under a cgroup namespace the path reads `/`, so the id is looked for in
//! the sources of the container's bind mounts instead
//! (`/var/lib/docker/containers/<id>/hostname`,
//! `/var/lib/containers/storage/overlay-containers/<id>/userdata/hosts`).

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, Copy)]
struct CgroupLine<'a> {
    hierarchy: &'a str,
    controllers: &'a str,
    path: &'a str,
}

impl CgroupLine<'_> {
    /// The cgroup v2 (unified) hierarchy line, `0::<path>`.
    fn is_unified(&self) -> bool {
        self.hierarchy == "0" && self.controllers.is_empty()
    }

    /// The v1 hierarchy systemd names, `<n>:name=systemd:<path>`.
    fn is_systemd(&self) -> bool {
        self.controllers == "name=systemd"
    }
}

fn cgroup_lines(cgroup: &str) -> impl Iterator<Item = CgroupLine<'_>> {
    cgroup.lines().filter_map(|line| {
        // The path may itself contain ':'.
        let mut fields = line.splitn(3, ':');
        Some(CgroupLine {
            hierarchy: fields.next()?,
            controllers: fields.next()?,
            path: fields.next()?,
        })
    })
}

/// The process's cgroup path: the unified (v2) one when the process has
/// one, else the `name=systemd` v1 one, else the first listed.
pub fn cgroup_path(cgroup: &str) -> Option<String> {
    let lines: Vec<CgroupLine<'_>> = cgroup_lines(cgroup).collect();
    lines
        .iter()
        .find(|line| line.is_unified())
        .or_else(|| lines.iter().find(|line| line.is_systemd()))
        .or_else(|| lines.first())
        .map(|line| line.path.to_owned())
}

/// The container id in the cgroup paths: the unified hierarchy first, the
/// innermost path component first (for nested containers).
pub fn container_id_from_cgroup(cgroup: &str) -> Option<String> {
    let (unified, v1): (Vec<_>, Vec<_>) = cgroup_lines(cgroup).partition(CgroupLine::is_unified);
    unified
        .iter()
        .chain(&v1)
        .find_map(|line| line.path.rsplit('/').find_map(id_in_cgroup_name))
        .map(str::to_owned)
}

/// Whether every cgroup path is `/`, as seen inside a cgroup namespace.
pub(super) fn only_root_cgroups(cgroup: &str) -> bool {
    let mut lines = cgroup_lines(cgroup).peekable();
    lines.peek().is_some() && lines.all(|line| line.path == "/")
}

/// The container id in the mount sources (the root field, 4th) of
/// `/proc/<pid>/mountinfo`: a `<id>` following a `containers` or
/// `overlay-containers` directory.
pub fn container_id_from_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(3))
        .find_map(id_in_mount_root)
        .map(str::to_owned)
}

fn id_in_mount_root(root: &str) -> Option<&str> {
    let components: Vec<&str> = root.split('/').collect();
    components.windows(2).find_map(|pair| {
        let parent_names_containers = matches!(pair[0], "containers" | "overlay-containers");
        (parent_names_containers && is_container_id(pair[1])).then_some(pair[1])
    })
}

/// The id in one cgroup name: `<id>`, `<prefix>-<id>.scope`, `<prefix>-<id>`
/// or `<prefix>:<id>`. Conmon (the runtime's monitor, outside the
/// container) has `-conmon-` cgroups: not the container.
fn id_in_cgroup_name(name: &str) -> Option<&str> {
    if name.contains("conmon") {
        return None;
    }
    let name = name.strip_suffix(".scope").unwrap_or(name);
    let id = name.rsplit(['-', ':']).next()?;
    is_container_id(id).then_some(id)
}

/// 64 lowercase hex digits.
fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4b6c1e2d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c";

    fn id_of(cgroup: &str) -> Option<String> {
        container_id_from_cgroup(cgroup)
    }

    #[test]
    fn docker_cgroupfs_v1() {
        let cgroup = format!(
            "12:pids:/docker/{ID}\n4:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/system.slice/containerd.service\n"
        );
        assert_eq!(id_of(&cgroup).as_deref(), Some(ID));
        assert_eq!(
            cgroup_path(&cgroup).as_deref(),
            Some("/system.slice/containerd.service")
        );
    }

    #[test]
    fn docker_systemd_v2() {
        let cgroup = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(id_of(&cgroup).as_deref(), Some(ID));
        assert_eq!(
            cgroup_path(&cgroup),
            Some(format!("/system.slice/docker-{ID}.scope"))
        );
    }

    #[test]
    fn kubernetes_paths() {
        let systemd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8f2c1e2a_3b4d_4e5f_9a6b_7c8d9e0f1a2b.slice/cri-containerd-{ID}.scope\n"
        );
        let cgroupfs = format!(
            "11:memory:/kubepods/besteffort/pod8f2c1e2a-3b4d-4e5f-9a6b-7c8d9e0f1a2b/{ID}\n"
        );
        let crio = format!(
            "0::/kubepods.slice/kubepods-pod8f2c1e2a_3b4d_4e5f_9a6b_7c8d9e0f1a2b.slice/crio-{ID}.scope\n"
        );
        for cgroup in [systemd, cgroupfs, crio] {
            assert_eq!(id_of(&cgroup).as_deref(), Some(ID), "{cgroup}");
        }
    }

    #[test]
    fn podman_with_container_child() {
        let cgroup = format!(
            "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
        );
        assert_eq!(id_of(&cgroup).as_deref(), Some(ID));
    }

    #[test]
    fn nested_docker_takes_the_innermost() {
        let outer = ID.replace('3', "0");
        let cgroup = format!("0::/docker/{outer}/docker/{ID}\n");
        assert_eq!(id_of(&cgroup).as_deref(), Some(ID));
    }

    #[test]
    fn not_containers() {
        for cgroup in [
            "0::/user.slice/user-1000.slice/session-2.scope\n".to_owned(),
            "0::/\n".to_owned(),
            // This machine's format: a 32-digit name is not a container id.
            "4:memory:/process_api/bc854696fc9b09def8127c9248195542\n0::/\n".to_owned(),
            format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"),
            format!("0::/system.slice/docker-{}.scope\n", ID.to_uppercase()),
            String::new(),
        ] {
            assert_eq!(id_of(&cgroup), None, "{cgroup}");
        }
    }

    #[test]
    fn cgroup_path_choice() {
        let v1_only = "3:cpu:/a\n1:name=systemd:/user.slice/b.scope\n";
        assert_eq!(cgroup_path(v1_only).as_deref(), Some("/user.slice/b.scope"));
        assert_eq!(cgroup_path("3:cpu:/a\n").as_deref(), Some("/a"));
        assert_eq!(cgroup_path("0::/we:ird\n").as_deref(), Some("/we:ird"));
        assert_eq!(cgroup_path(""), None);
    }

    #[test]
    fn root_only_cgroups() {
        assert!(only_root_cgroups("0::/\n"));
        assert!(only_root_cgroups("2:cpu:/\n0::/\n"));
        assert!(!only_root_cgroups("4:memory:/x\n0::/\n"));
        assert!(!only_root_cgroups(""));
    }

    #[test]
    fn mountinfo_docker_and_podman() {
        let docker = format!(
            "612 585 0:52 / / rw,relatime master:310 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X,upperdir=/var/lib/docker/overlay2/{ID}/diff\n\
             640 612 254:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&docker).as_deref(), Some(ID));

        let podman = format!(
            "700 690 0:41 /containers/storage/overlay-containers/{ID}/userdata/hosts /etc/hosts rw,nosuid,nodev - tmpfs tmpfs rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&podman).as_deref(), Some(ID));
    }

    #[test]
    fn mountinfo_ignores_layer_ids_and_sandboxes() {
        let mountinfo = format!(
            "612 585 0:52 / / rw - overlay overlay rw,upperdir=/var/lib/docker/overlay2/{ID}/diff\n\
             640 612 254:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{ID}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n\
             22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&mountinfo), None);
    }
}
