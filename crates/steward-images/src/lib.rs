//! Image management for cloud providers: definitions, SCS image metadata, checksums.
//!
//! Operators keep public Glance images (Ubuntu, CirrOS, Kubernetes CAPI node images, …) current
//! from declarative definitions. This crate reads the definition files of osism's
//! openstack-image-manager as they are ([`definition`]), checks them against Glance's
//! vocabulary and the SCS image metadata standard scs-0102 ([`scs0102`], the same rule code the
//! conformance checks use on images in Glance), and parses upstream checksum files in every
//! format upstreams publish ([`checksum`]).
//!
//! ```
//! use steward_images::definition::parse_file;
//!
//! let yaml = "images:\n  - name: Cirros\n    enable: true\n    format: qcow2\n    login: cirros\n    min_disk: 1\n    min_ram: 64\n    status: active\n    visibility: public\n    multi: false\n    tags: []\n    meta:\n      architecture: x86_64\n      hypervisor_type: qemu\n      hw_disk_bus: virtio\n      os_distro: cirros\n      os_purpose: minimal\n      image_description: CirrOS\n      replace_frequency: never\n      uuid_validity: none\n      provided_until: none\n    versions:\n      - version: 0.6.3\n        url: https://github.com/cirros-dev/cirros/releases/download/0.6.3/cirros-0.6.3-x86_64-disk.img\n        checksums_url: https://download.cirros-cloud.net/0.6.3/SHA256SUMS\n";
//! let (images, problems) = parse_file("cirros.yml".as_ref(), yaml);
//! assert!(problems.is_empty(), "{problems:?}");
//! assert_eq!(images[0].name.value, "Cirros");
//! ```

#![deny(missing_docs)]

pub mod apply;
pub mod checksum;
pub mod definition;
pub mod plan;
pub mod problem;
pub mod scs0102;
pub mod upstream;
