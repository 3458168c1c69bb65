-- In every app and month, new + expansion + contraction + churn + reactivation is the
-- change of MRR from the month before.
select product_id, mrr_month, mrr_change,
       new_mrr + expansion_mrr + contraction_mrr + churned_mrr + reactivation_mrr as movements
from {{ ref('fct_marketplace_mrr') }}
where new_mrr + expansion_mrr + contraction_mrr + churned_mrr + reactivation_mrr <> mrr_change
