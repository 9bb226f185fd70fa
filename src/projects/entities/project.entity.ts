import { Column, Entity, PrimaryColumn } from 'typeorm';

/** A tenant-owned row: organization_id is filled by the database from the transaction's tenant. */
@Entity('projects')
export class Project {
  @PrimaryColumn('uuid')
  id!: string;

  @Column({ name: 'organization_id', type: 'uuid', insert: false, update: false, select: false })
  organizationId!: string;

  @Column('text')
  name!: string;

  @Column('text', { nullable: true })
  description!: string | null;

  @Column({ name: 'created_at', type: 'timestamptz', insert: false, update: false })
  createdAt!: Date;

  @Column({ name: 'updated_at', type: 'timestamptz', insert: false })
  updatedAt!: Date;
}
