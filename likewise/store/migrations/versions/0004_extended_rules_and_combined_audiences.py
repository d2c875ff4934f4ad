"""extended rules and combined audiences

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Likewise's own audience API: the dialect a rule audience's ``rule_spec`` is in (TikTok's, or
Likewise's with AND between rules and thresholds), and combined audiences (their definition and
an index from each part to the combined audiences made of it). Portable SQL only (SQLite and
PostgreSQL).
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audience_rules', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('extended', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table('audience_combinations',
    sa.Column('audience_id', sa.BigInteger(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['audience_id'], ['audiences.id'], ),
    sa.PrimaryKeyConstraint('audience_id')
    )
    op.create_table('audience_combination_parts',
    sa.Column('audience_id', sa.BigInteger(), nullable=False),
    sa.Column('part_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['audience_id'], ['audiences.id'], ),
    sa.ForeignKeyConstraint(['part_id'], ['audiences.id'], ),
    sa.PrimaryKeyConstraint('audience_id', 'part_id')
    )
    with op.batch_alter_table('audience_combination_parts', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_audience_combination_parts_part_id'), ['part_id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('audience_combination_parts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audience_combination_parts_part_id'))
    op.drop_table('audience_combination_parts')
    op.drop_table('audience_combinations')
    with op.batch_alter_table('audience_rules', schema=None) as batch_op:
        batch_op.drop_column('extended')
