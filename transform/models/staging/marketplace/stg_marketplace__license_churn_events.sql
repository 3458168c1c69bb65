{{ stage('marketplace', 'license_churn_events', license_event_columns(), unique_key='license_ref, event_date', order_by='last_updated desc') }}
