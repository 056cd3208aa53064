# The kiln example image as an AWS AMI: the same three stages as the local bake
# (packaging/image/bake.sh), run by the same stage scripts, as root, on a build instance.
#
#   packaging/build-static.sh && packaging/debian/build-deb.sh     # the .deb uploaded below
#   packer init packaging/packer
#   packer build -var region=eu-west-1 -var kiln_toml=/path/to/aws/kiln.toml packaging/packer
#
# Stage 1, base image: Debian's own Debian 12 AMI (kernel, cloud-init, networking, ssh), where the
# local bake debootstraps one (stages/base.sh, which is for qemu only and not run here).
# Stage 2, application base (stages/appbase.sh) and stage 3, final image (stages/final.sh): the
# scripts the local bake runs in a chroot, run here by shell provisioners with the same inputs in
# the same place (/tmp/kiln-stage), the same shell flags (sh -eu) and as root. What
# packaging/image/e2e.sh boots and checks is what this template bakes, but for kiln.toml: the local
# one points at the e2e's HAProxy; pass your own with -var kiln_toml (e.g. [lb] kind = "elbv2").

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "instance_type" {
  type    = string
  default = "t3.small"
}

variable "kiln_deb" {
  type        = string
  description = "The kiln package, from packaging/debian/build-deb.sh."
  default     = "target/debian/kiln_0.1.0-1_amd64.deb"
}

variable "app_dir" {
  type        = string
  description = "The app baked into /srv/app (a Symfony app: the final stage warms its cache)."
  default     = "examples/symfony/app"
}

variable "kiln_toml" {
  type        = string
  description = "kiln's config for instances of this AMI (/etc/kiln/kiln.toml)."
  default     = "packaging/image/files/final/etc/kiln/kiln.toml"
}

variable "ami_name_prefix" {
  type    = string
  default = "kiln-symfony"
}

locals {
  stage_dir = "/tmp/kiln-stage"
  # As bake.sh's run_stage: root, `sh -eu SCRIPT`, a clean environment.
  as_root = "chmod +x {{ .Path }}; sudo env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 HOME=/root sh -eu {{ .Path }}"
}

source "amazon-ebs" "kiln" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = "admin" # Debian's AMIs

  # Stage 1: Debian 12's official AMI, from Debian's AWS account.
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"]
    most_recent = true
  }

  # The build instance and every instance of the AMI speak IMDSv2 only (kiln does; a hop limit of
  # 1 keeps containers on the instance away from the instance's credentials).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }
  imds_support = "v2.0"

  ami_name        = "${var.ami_name_prefix}-${formatdate("YYYYMMDD-hhmmss", timestamp())}"
  ami_description = "PHP app on Debian 12, booted by kiln, sealed at bake time"
  tags = {
    "kiln:sealed" = "true"
    "kiln:base"   = "{{ .SourceAMIName }}"
  }
}

build {
  sources = ["source.amazon-ebs.kiln"]

  # The stage scripts and their files, where bake.sh puts them.
  provisioner "shell" {
    inline = ["rm -rf ${local.stage_dir}", "mkdir -p ${local.stage_dir}/app"]
  }
  provisioner "file" {
    sources     = ["packaging/image/stages", "packaging/image/files"]
    destination = "${local.stage_dir}/"
  }

  # Stage 2: application base image.
  provisioner "shell" {
    script          = "packaging/image/stages/appbase.sh"
    execute_command = local.as_root
  }

  # Stage 3: final image, sealed as its last step.
  provisioner "file" {
    source      = var.kiln_deb
    destination = "${local.stage_dir}/kiln.deb"
  }
  provisioner "file" {
    source      = "${var.app_dir}/"
    destination = "${local.stage_dir}/app"
  }
  provisioner "file" {
    source      = var.kiln_toml
    destination = "${local.stage_dir}/files/final/etc/kiln/kiln.toml"
  }
  provisioner "shell" {
    script          = "packaging/image/stages/final.sh"
    execute_command = local.as_root
  }

  provisioner "shell" {
    inline = ["sudo rm -rf ${local.stage_dir}"]
  }
}
