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
    /// Start of a 24-byte window of `pt_regs` holding all three arguments
    /// (x86_64: dx, si, di are adjacent), read with one helper call; or
    /// [`NO_REGS_WINDOW`] when they are not adjacent (arm64).
    pub regs_window: u32,
    /// Slot (0..=2) of argument n in the window, in bits 2n..2n+1.
    pub regs_window_slots: u32,
    /// Offset of `group_dead` in the `sched_process_exit` tracepoint
    /// record, or 0 when this kernel's record has no such field.
    pub exit_group_dead: u32,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 120);

/// [`KernelOffsets::regs_window`] when the arguments are not adjacent.
pub const NO_REGS_WINDOW: u32 = u32::MAX;

impl KernelOffsets {
    /// Fills `regs_window`/`regs_window_slots` from the three argument
    /// offsets.
    pub fn set_regs_window(&mut self) {
        let offs = [self.regs_arg0, self.regs_arg1, self.regs_arg2];
        let start = offs[0].min(offs[1]).min(offs[2]);
        let mut slots = 0u32;
        let mut seen = 0u32;
        for (n, off) in offs.iter().enumerate() {
            let rel = off - start;
            if !rel.is_multiple_of(8) || rel > 16 {
                self.regs_window = NO_REGS_WINDOW;
                self.regs_window_slots = 0;
                return;
            }
            slots |= (rel / 8) << (2 * n);
            seen |= 1 << (rel / 8);
        }
        if seen == 0b111 {
            self.regs_window = start;
            self.regs_window_slots = slots;
        } else {
            self.regs_window = NO_REGS_WINDOW;
            self.regs_window_slots = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regs_window() {
        // x86_64: di@112, si@104, dx@96.
        let mut o = KernelOffsets {
            regs_arg0: 112,
            regs_arg1: 104,
            regs_arg2: 96,
            ..Default::default()
        };
        o.set_regs_window();
        assert_eq!(o.regs_window, 96);
        assert_eq!(o.regs_window_slots, 2 | (1 << 2));
        // arm64: orig_x0 far from regs[1], regs[2].
        let mut o = KernelOffsets {
            regs_arg0: 272,
            regs_arg1: 8,
            regs_arg2: 16,
            ..Default::default()
        };
        o.set_regs_window();
        assert_eq!(o.regs_window, NO_REGS_WINDOW);
        // Adjacent but overlapping is no window.
        let mut o = KernelOffsets {
            regs_arg0: 8,
            regs_arg1: 8,
            regs_arg2: 16,
            ..Default::default()
        };
        o.set_regs_window();
        assert_eq!(o.regs_window, NO_REGS_WINDOW);
    }
}
