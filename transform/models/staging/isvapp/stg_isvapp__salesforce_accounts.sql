{%- set columns = [
    ['salesforce_account_id', 'text', 'salesforce_id'],
    ['isvapp_id', 'text', 'isvapp_id'],
    ['account_name', 'text', 'name'],
    ['health_scores', 'json', json_array(col('health_scores'))],
    ['subscriber_orgs', 'json', json_array(col('subscriber_orgs'))],
] -%}
{{ stage('isvapp', 'salesforce_accounts', columns, unique_key='salesforce_account_id', order_by='salesforce_account_id') }}
