//! Offsets of kernel struct fields, computed by userspace from the running
//! kernel's BTF (`/sys/kernel/btf/vmlinux`) and written into the eBPF
//! object's `KERNEL_OFFSETS` global before it is loaded.
//!
//! This replaces CO-RE relocations (which Rust eBPF cannot emit yet): the
//! programs walk `current->files->fdt->fd[fd]->private_data->sk` with
//! `bpf_probe_read_kernel` at these offsets, so one object runs on every
//! kernel with BTF.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.files`
    pub task_files: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.max_fds`
    pub fdt_max_fds: u32,
    /// `fdtable.fd`
    pub fdt_fd: u32,
    /// `file.f_inode`
    pub file_inode: u32,
    /// `file.private_data`
    pub file_private_data: u32,
    /// `inode.i_mode`
    pub inode_mode: u32,
    /// `socket.type`
    pub socket_type: u32,
    /// `socket.sk`
    pub socket_sk: u32,
    /// `sock_common.skc_family` (within `struct sock`)
    pub sk_family: u32,
    /// `sock_common.skc_state`
    pub sk_state: u32,
    /// `sock_common.skc_num` (local port, host order)
    pub sk_num: u32,
    /// `sock_common.skc_dport` (remote port, network order)
    pub sk_dport: u32,
    /// `sock_common.skc_rcv_saddr`
    pub sk_rcv_saddr: u32,
    /// `sock_common.skc_daddr`
    pub sk_daddr: u32,
    /// `sock_common.skc_v6_rcv_saddr`
    pub sk_v6_rcv_saddr: u32,
    /// `sock_common.skc_v6_daddr`
    pub sk_v6_daddr: u32,
    /// `sock_common.skc_net` (a `possible_net_t` holding `struct net *`)
    pub sk_net: u32,
    /// `net.ns.inum`
    pub net_ns_inum: u32,
    /// `task_struct.mm`
    pub task_mm: u32,
    /// `mm_struct.arg_start` (the next field, `arg_end`, is read too)
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`
    pub mm_arg_end: u32,
    /// `mm_struct.env_start`
    pub mm_env_start: u32,
    /// `mm_struct.env_end`
    pub mm_env_end: u32,
    /// Offsets in `struct pt_regs` of the first three syscall arguments as
    /// they are at syscall exit (x86_64: di, si, dx; arm64: orig_x0,
    /// regs[1], regs[2]).
    pub regs_arg0: u32,
    pub regs_arg1: u32,
    pub regs_arg2: u32,
    /// Offset of `group_dead` in the `sched_process_exit` tracepoint
    /// record, or 0 when this kernel's record has no such field.
    pub exit_group_dead: u32,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 112);
