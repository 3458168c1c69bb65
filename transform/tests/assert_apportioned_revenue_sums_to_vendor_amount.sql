-- Every transaction line's recognised months add up to its vendorAmount, to the cent.
select
    transactions.transaction_line_item_id,
    transactions.vendor_amount,
    sum(months.recognized_vendor_amount) as recognized
from {{ ref('stg_marketplace__transactions') }} as transactions
left join {{ ref('int_marketplace__transaction_revenue_months') }} as months
    on months.transaction_line_item_id = transactions.transaction_line_item_id
where transactions.vendor_amount is not null
  and coalesce(transactions.maintenance_start_date, transactions.sale_date) is not null
group by transactions.transaction_line_item_id, transactions.vendor_amount
having sum(months.recognized_vendor_amount) is null
    or sum(months.recognized_vendor_amount) <> transactions.vendor_amount
