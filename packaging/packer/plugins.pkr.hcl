# The amazon plugin (Packer 1.7+ no longer bundles builders): `packer init packaging/packer`.
packer {
  required_version = ">= 1.8.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.0"
    }
  }
}
