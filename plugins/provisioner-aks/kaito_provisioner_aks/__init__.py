"""AKS GPU node pools for kaito, through azure-mgmt-containerservice."""
