//! Kernel struct field offsets from the running kernel's BTF, for the
//! descriptor → socket walk in `agent-ebpf/src/sock.rs`.

use std::path::Path;

use agent_common::KernelOffsets;
use btf_rs::{Btf, Type};

use super::BpfError;

/// Where the kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Computes every offset of [`KernelOffsets`] from the BTF at `path`.
/// `exit_group_dead` comes from tracefs, not BTF, and is left 0.
pub fn from_btf(path: &Path) -> Result<KernelOffsets, BpfError> {
    let btf = Btf::from_file(path).map_err(|e| BpfError::Btf {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let f = |s: &str, field: &str| field_offset(&btf, s, field);
    let sk = |field: &str| field_offset(&btf, "sock_common", field);
    Ok(KernelOffsets {
        task_files: f("task_struct", "files")?,
        files_fdt: f("files_struct", "fdt")?,
        fdt_max_fds: f("fdtable", "max_fds")?,
        fdt_fd: f("fdtable", "fd")?,
        file_inode: f("file", "f_inode")?,
        file_private_data: f("file", "private_data")?,
        inode_mode: f("inode", "i_mode")?,
        socket_type: f("socket", "type")?,
        socket_sk: f("socket", "sk")?,
        // `struct sock` starts with `struct sock_common __sk_common`.
        sk_family: f("sock", "__sk_common")? + sk("skc_family")?,
        sk_state: f("sock", "__sk_common")? + sk("skc_state")?,
        sk_num: f("sock", "__sk_common")? + sk("skc_num")?,
        sk_dport: f("sock", "__sk_common")? + sk("skc_dport")?,
        sk_rcv_saddr: f("sock", "__sk_common")? + sk("skc_rcv_saddr")?,
        sk_daddr: f("sock", "__sk_common")? + sk("skc_daddr")?,
        sk_v6_rcv_saddr: f("sock", "__sk_common")? + sk("skc_v6_rcv_saddr")?,
        sk_v6_daddr: f("sock", "__sk_common")? + sk("skc_v6_daddr")?,
        sk_net: f("sock", "__sk_common")? + sk("skc_net")?,
        net_ns_inum: f("net", "ns")? + f("ns_common", "inum")?,
        task_mm: f("task_struct", "mm")?,
        mm_arg_start: f("mm_struct", "arg_start")?,
        mm_arg_end: f("mm_struct", "arg_end")?,
        mm_env_start: f("mm_struct", "env_start")?,
        mm_env_end: f("mm_struct", "env_end")?,
        regs_arg0: regs_arg(&btf, 0)?,
        regs_arg1: regs_arg(&btf, 1)?,
        regs_arg2: regs_arg(&btf, 2)?,
        exit_group_dead: 0,
        regs_window: 0,
        regs_window_slots: 0,
    })
    .map(|mut o| {
        o.set_regs_window();
        o
    })
}

/// Offset in `struct pt_regs` of syscall argument `n` (0..=2) as saved at
/// syscall entry and still valid at exit.
fn regs_arg(btf: &Btf, n: u32) -> Result<u32, BpfError> {
    #[cfg(target_arch = "x86_64")]
    {
        field_offset(btf, "pt_regs", ["di", "si", "dx"][n as usize])
    }
    #[cfg(target_arch = "aarch64")]
    {
        // x0 holds the return value at exit; the kernel keeps orig_x0.
        if n == 0 {
            field_offset(btf, "pt_regs", "orig_x0")
        } else {
            Ok(field_offset(btf, "pt_regs", "regs")? + 8 * n)
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (btf, n);
        Err(BpfError::BtfField {
            type_name: "pt_regs".to_string(),
            field: format!("syscall argument {n} (unsupported architecture)"),
        })
    }
}

/// Byte offset of `field` in `struct name`, looking through anonymous
/// unions and structs (as C does).
fn field_offset(btf: &Btf, name: &str, field: &str) -> Result<u32, BpfError> {
    let missing = || BpfError::BtfField {
        type_name: name.to_string(),
        field: field.to_string(),
    };
    let types = btf.resolve_types_by_name(name).map_err(|_| missing())?;
    for ty in types {
        if let Type::Struct(s) = ty
            && let Some(bits) = find_member(btf, &s, field, 0)
        {
            if bits % 8 != 0 {
                return Err(missing());
            }
            return Ok(bits / 8);
        }
    }
    Err(missing())
}

fn find_member(btf: &Btf, s: &btf_rs::Struct, field: &str, base_bits: u32) -> Option<u32> {
    for m in &s.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        let bits = base_bits + m.bit_offset();
        if name == field {
            return Some(bits);
        }
        if name.is_empty()
            && let Ok(Type::Struct(inner) | Type::Union(inner)) = btf.resolve_chained_type(m)
            && let Some(found) = find_member(btf, &inner, field, bits)
        {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_of_running_kernel() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            // Only meaningful where the kernel exposes BTF; the BPF
            // integration tests require it under CI.
            return;
        }
        let o = from_btf(path).expect("offsets");
        assert!(o.task_files > 0);
        assert!(o.sk_family < 64, "sock_common is at the start of sock");
        assert!(o.sk_dport < o.sk_family + 64);
        assert_ne!(o.sk_rcv_saddr, o.sk_daddr);
    }
}
