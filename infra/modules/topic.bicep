// The custom topic the control plane publishes its outbound events to (CloudEvents 1.0:
// aztrain.run.*, aztrain.cluster.scaled_to_zero, aztrain.model.*, aztrain.window.fired; docs/events.md).
// Publishers authenticate with Entra ID only: the Function App's identity holds EventGrid Data
// Sender on this topic (rbac.bicep); no access key exists to leak.

param location string
param tags object
param name string

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  // checkov:skip=CKV_AZURE_193: The Function App (Flex Consumption without VNet integration) publishes over the topic's public endpoint, with Entra ID only (local auth is disabled). Disabling public access needs a private endpoint and VNet-integrated publishers, which this template does not deploy (docs/deploy.md, Known limits).
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned' // delivers to subscribers' Entra-protected endpoints and dead-letters with Entra ID
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true // no aeg-sas-key: the managed identity, or nothing
    publicNetworkAccess: 'Enabled'
  }
}

output name string = topic.name
output endpoint string = topic.properties.endpoint
