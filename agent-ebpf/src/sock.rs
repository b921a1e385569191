//! From a descriptor of the current process to its `struct sock`, and the
//! socket's addresses, by reading kernel memory at BTF-derived offsets
//! ([`agent_common::KernelOffsets`]).

use agent_common::{AF_INET, AF_INET6, ConnOpenRecord, EndpointKey};
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};

use crate::maps::offset;

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const SOCK_STREAM: u16 = 1;

#[inline(always)]
fn kread<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel tolerates any address (it faults safely).
    unsafe { bpf_probe_read_kernel(addr as *const T).ok() }
}

/// The `struct sock` behind descriptor `fd` of the current process, if it is
/// an IPv4/IPv6 stream socket.
#[inline(always)]
pub fn sock_of_fd(fd: u32) -> Option<u64> {
    // SAFETY: returns the current task pointer; only used as an address.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = kread(task + offset!(task_files))?;
    let fdt: u64 = kread(files + offset!(files_fdt))?;
    let max_fds: u32 = kread(fdt + offset!(fdt_max_fds))?;
    if fd >= max_fds {
        return None;
    }
    let fd_array: u64 = kread(fdt + offset!(fdt_fd))?;
    let file: u64 = kread(fd_array + u64::from(fd) * 8)?;
    if file == 0 {
        return None;
    }
    let inode: u64 = kread(file + offset!(file_inode))?;
    let mode: u16 = kread(inode + offset!(inode_mode))?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket: u64 = kread(file + offset!(file_private_data))?;
    let sock_type: u16 = kread(socket + offset!(socket_type))?;
    if sock_type != SOCK_STREAM {
        return None;
    }
    let sk: u64 = kread(socket + offset!(socket_sk))?;
    let family: u16 = kread(sk + offset!(sk_family))?;
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    Some(sk)
}

/// The local endpoint of `sk` (address, port, network namespace).
#[inline(always)]
pub fn local_endpoint(sk: u64, key: &mut EndpointKey) {
    let family: u16 = kread(sk + offset!(sk_family)).unwrap_or(0);
    key.port = kread(sk + offset!(sk_num)).unwrap_or(0);
    if family == AF_INET {
        let l: [u8; 4] = kread(sk + offset!(sk_rcv_saddr)).unwrap_or([0; 4]);
        key.addr[..4].copy_from_slice(&l);
    } else {
        key.addr = kread(sk + offset!(sk_v6_rcv_saddr)).unwrap_or([0; 16]);
    }
    let net: u64 = kread(sk + offset!(sk_net)).unwrap_or(0);
    if net != 0 {
        key.netns = kread(net + offset!(net_ns_inum)).unwrap_or(0);
    }
}

/// Fills family, state, ports, addresses and network namespace of `sk`.
#[inline(always)]
pub fn read_addresses(sk: u64, rec: &mut ConnOpenRecord) {
    let family: u16 = kread(sk + offset!(sk_family)).unwrap_or(0);
    rec.family = family;
    rec.tcp_state = kread(sk + offset!(sk_state)).unwrap_or(0);
    rec.local_port = kread(sk + offset!(sk_num)).unwrap_or(0);
    let dport: u16 = kread(sk + offset!(sk_dport)).unwrap_or(0);
    rec.remote_port = u16::from_be(dport);
    if family == AF_INET {
        let l: [u8; 4] = kread(sk + offset!(sk_rcv_saddr)).unwrap_or([0; 4]);
        let r: [u8; 4] = kread(sk + offset!(sk_daddr)).unwrap_or([0; 4]);
        rec.local_addr[..4].copy_from_slice(&l);
        rec.remote_addr[..4].copy_from_slice(&r);
    } else {
        rec.local_addr = kread(sk + offset!(sk_v6_rcv_saddr)).unwrap_or([0; 16]);
        rec.remote_addr = kread(sk + offset!(sk_v6_daddr)).unwrap_or([0; 16]);
    }
    let net: u64 = kread(sk + offset!(sk_net)).unwrap_or(0);
    if net != 0 {
        rec.netns = kread(net + offset!(net_ns_inum)).unwrap_or(0);
    }
}
